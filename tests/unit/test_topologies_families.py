"""Every family builds valid mixing matrices where it is defined and refuses cleanly where not."""
import math

import networkx as nx
import numpy as np
import pytest

from topologies import (FAMILIES, Topology, TopologyError, build, from_spec, in_neighbors,
                        out_neighbors)

NEEDS_FILE = {"graph-file", "matrix-file", "digraph-file"}
PUSH_ONLY = {"random-out"}  # column-stochastic push graphs (push-sum), tested below
BUILT_IN = sorted(set(FAMILIES) - NEEDS_FILE - PUSH_ONLY)


def is_defined(name, n):
    """Where each built-in family exists, stated independently of the builders."""
    if name == "ring":
        return n >= 3
    if name == "torus":
        return any(n % r == 0 and r >= 3 and n // r >= 3 for r in range(3, n + 1))
    if name == "hypercube":
        return n & (n - 1) == 0
    return True


def assert_mixing(W, n):
    assert W.shape == (n, n) and W.dtype == np.float64
    assert (W >= 0).all()
    assert np.allclose(W.sum(axis=0), 1, atol=1e-12)
    assert np.allclose(W.sum(axis=1), 1, atol=1e-12)


def assert_matches_graph(W, G):
    n = len(W)
    assert sorted(G.nodes) == list(range(n))
    for i in range(n):
        for j in range(n):
            if i != j and W[i, j] > 0:  # i receives from j
                assert G.has_edge(j, i), (i, j)
    for u, v, w in G.edges(data="weight"):
        assert w == pytest.approx(W[v, u]) and w > 0


def steps_to_check(topo):
    return range(min(topo.period, 5))


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_family_is_doubly_stochastic_on_its_graph_for_n_2_to_64(name):
    for n in range(2, 65):
        if not is_defined(name, n):
            with pytest.raises(TopologyError):
                build(name, n)
            continue
        topo = build(name, n)
        assert isinstance(topo, Topology) and topo.n == n and topo.name == name
        for t in steps_to_check(topo):
            assert_mixing(topo.W(t), n)
            assert_matches_graph(topo.W(t), topo.graph(t))


@pytest.mark.parametrize("name", BUILT_IN)
def test_neighbour_lists_are_read_off_W(name):
    topo = build(name, 16)
    for t in steps_to_check(topo):
        W = topo.W(t)
        for i in range(16):
            assert in_neighbors(W, i) == [(j, W[i, j]) for j in range(16) if j != i and W[i, j] > 0]
            assert out_neighbors(W, i) == [(j, W[j, i]) for j in range(16) if j != i and W[j, i] > 0]
            assert topo.in_neighbors(i, t) == in_neighbors(W, i)
        # What i receives from j is what j sends to i.
        sent = {(i, j): w for i in range(16) for j, w in out_neighbors(W, i)}
        received = {(j, i): w for i in range(16) for j, w in in_neighbors(W, i)}
        assert sent == received


def test_ring_weights_are_exactly_one_third():
    W = build("ring", 10).W()
    assert W[4, 3] == W[4, 4] == W[4, 5] == 1 / 3
    assert in_neighbors(W, 0) == [(1, 1 / 3), (9, 1 / 3)]


@pytest.mark.parametrize("n", [3, 5, 8, 9, 16, 31, 64])
def test_exponential_graph_out_degree_is_ceil_log2_n(n):
    topo = build("exponential", n)
    hops = math.ceil(math.log2(n))
    assert topo.directed and isinstance(topo.graph(), nx.DiGraph)
    for i in range(n):
        expected = sorted({(i + 2 ** k) % n for k in range(hops)})
        assert [j for j, _ in out_neighbors(topo.W(), i)] == expected
        assert all(w == pytest.approx(1 / (hops + 1)) for _, w in in_neighbors(topo.W(), i))
    assert topo.describe()["max_out_degree"] == hops


def test_one_peer_exponential_sends_to_one_peer_per_step():
    topo = build("one-peer-exponential", 12)
    assert topo.period == 4 and topo.time_varying
    for t in range(9):
        hop = 2 ** (t % 4)
        for i in range(12):
            assert in_neighbors(topo.W(t), i) == [((i + hop) % 12, 0.5)]


def test_static_families_return_one_read_only_matrix_for_every_t():
    topo = build("torus", 9)
    assert topo.period == 1 and not topo.time_varying
    assert topo.W(0) is topo.W(7)
    with pytest.raises(ValueError):
        topo.W()[0, 0] = 1.0


def test_random_one_peer_is_directed_and_doubly_stochastic_for_1000_steps():
    topo = build("random-one-peer", 8, seed=3)
    assert topo.period == 1000 and topo.directed
    asymmetric = 0
    for t in range(1000):
        W = topo.W(t)
        assert_mixing(W, 8)
        assert np.all(np.diag(W) == 0.5)  # no fixed points: everyone talks to someone else
        assert all(len(in_neighbors(W, i)) == 1 == len(out_neighbors(W, i)) for i in range(8))
        asymmetric += not np.array_equal(W, W.T)
    assert asymmetric > 900
    assert np.array_equal(topo.W(1000), topo.W(0))


def test_random_families_depend_only_on_their_seed():
    for name in ("random-regular", "erdos-renyi", "random-one-peer"):
        a, b, c = build(name, 20, seed=1), build(name, 20, seed=1), build(name, 20, seed=2)
        assert np.array_equal(a.W(5), b.W(5))
        assert not np.array_equal(a.W(5), c.W(5))


def test_random_regular_graph_has_the_requested_degree_and_is_connected():
    topo = build("random-regular", 30, degree=4, seed=5)
    assert nx.is_connected(topo.graph())
    assert {d for _, d in topo.graph().degree} == {4}
    assert np.allclose(np.diag(topo.W()), 1 / 5)


def test_erdos_renyi_that_cannot_connect_is_refused():
    with pytest.raises(TopologyError, match="disconnected"):
        build("erdos-renyi", 30, p=0.0)


@pytest.mark.parametrize("rule", ["metropolis", "max-degree"])
def test_weight_rules_on_an_irregular_graph(rule):
    W = build("grid", 6, weights=rule, rows=2, cols=3).W()
    assert_mixing(W, 6)
    assert np.allclose(W, W.T)


def test_metropolis_weights_on_a_path():
    # Path 0-1-2 (grid 1 x 3): edges weigh 1/(1 + max(1, 2)) = 1/3.
    W = build("grid", 3, rows=1, cols=3).W()
    assert np.allclose(W, [[2 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 2 / 3]])


def test_explicit_weight_matrix_is_checked_against_the_graph():
    ring = build("ring", 4)
    lazy = 0.5 * np.eye(4) + 0.5 * ring.W()
    assert np.array_equal(build("ring", 4, weights=lazy).W(), lazy)
    with pytest.raises(TopologyError, match="not neighbours"):
        build("ring", 4, weights=np.full((4, 4), 0.25))


def test_from_spec_parses_options_and_weights():
    topo = from_spec("torus:rows=3,cols=4", 12)
    assert topo.options == {"rows": 3, "cols": 4}
    assert from_spec(topo.spec, 12).options == topo.options
    assert from_spec("exponential:weights=uniform", 8).weights == "uniform"
    assert from_spec("random-regular:degree=3,seed=1", 10).options == {"degree": 3, "seed": 1}
    assert from_spec("erdos-renyi:p=0.5,seed=2", 10).options["p"] == 0.5
    assert from_spec(" ring ", 5).name == "ring"


@pytest.mark.parametrize("name, n, options, message", [
    ("mesh", 8, {}, "unknown topology 'mesh' (known: complete, ring"),
    ("ring", 0, {}, "n must be a positive integer, got 0"),
    ("ring", 2, {}, "ring needs n >= 3"),
    ("torus", 7, {}, "torus needs n = rows*cols with rows, cols >= 3, got n=7"),
    ("torus", 16, {"rows": 5}, "torus needs n = rows*cols"),
    ("torus", 16, {"rows": 2.5}, "rows must be an integer"),
    ("hypercube", 12, {}, "hypercube needs n to be a power of two, got n=12"),
    ("ring", 8, {"degree": 3}, "unknown option 'degree' for ring (it takes none)"),
    ("torus", 16, {"depth": 3}, "unknown option 'depth' for torus (known: rows, cols)"),
    ("random-regular", 9, {"degree": 3}, "n*degree even"),
    ("erdos-renyi", 9, {"p": 1.5}, "p must be a number in [0, 1]"),
    ("graph-file", 4, {}, "graph-file needs option path=FILE"),
])
def test_bad_inputs_raise_one_line_topology_errors(name, n, options, message):
    with pytest.raises(TopologyError) as info:
        build(name, n, **options)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name, weights", [
    ("exponential", "metropolis"), ("one-peer-exponential", "max-degree"),
    ("ring", "quadratic"), ("grid", "uniform"), ("matrix-file", "uniform")])
def test_weight_rules_a_family_cannot_use_are_refused(name, weights):
    with pytest.raises(TopologyError, match="weights"):
        build(name, 6, weights=weights, **({"path": "W.npy"} if name == "matrix-file" else {}))


@pytest.mark.parametrize("spec", ["", "torus:rows4", "torus:rows=4,rows=4", "ring:=3"])
def test_malformed_specs_are_refused(spec):
    with pytest.raises(TopologyError):
        from_spec(spec, 16)


def test_describe_reports_degrees_and_spectrum():
    info = build("ring", 16).describe()
    assert {"name", "n", "period", "max_in_degree", "max_out_degree", "lambda2",
            "spectral_gap"} <= set(info)
    assert (info["max_in_degree"], info["max_out_degree"]) == (2, 2)
    assert info["lambda2"] == pytest.approx((1 + 2 * math.cos(2 * math.pi / 16)) / 3, abs=1e-12)
    assert info["spectral_gap"] == pytest.approx(1 - info["lambda2"], abs=1e-12)


@pytest.mark.parametrize("s", [1, 2, 3])
def test_random_out_pushes_to_s_others_with_equal_shares_and_is_column_stochastic(s):
    for n in range(s + 1, 40):
        topo = from_spec(f"random-out:s={s},seed=7", n)
        assert topo.stochastic == "column" and topo.time_varying
        for t in range(3):
            P = topo.W(t)
            np.testing.assert_allclose(P.sum(axis=0), 1.0, atol=1e-12)
            assert np.all((P > 0).sum(axis=0) == s + 1)  # itself and s others
            np.testing.assert_array_equal(P, from_spec(f"random-out:s={s},seed=7", n).W(t))  # same on every process
    with pytest.raises(TopologyError, match="needs n >= s \\+ 1"):
        from_spec("random-out:s=3", 3)


def test_directed_exponential_pushes_half_to_i_plus_2_to_the_k():
    topo = from_spec("directed-exponential", 8)
    assert topo.period == 3
    for t in range(3):
        P = topo.W(t)
        for i in range(8):
            assert P[i, i] == 0.5 and P[(i + 2 ** t) % 8, i] == 0.5


def test_a_user_directed_graph_file_gives_push_shares(tmp_path):
    f = tmp_path / "g.txt"
    f.write_text("0 1\n0 2\n1 2\n2 0\n")
    P = from_spec(f"digraph-file:path={f}", 3).W(0)
    expected = np.array([[1 / 3, 0, 1 / 2], [1 / 3, 1 / 2, 0], [1 / 3, 1 / 2, 1 / 2]])
    np.testing.assert_allclose(P, expected)
    f.write_text("0 5\n")
    with pytest.raises(TopologyError, match="names nodes outside 0..2"):
        from_spec(f"digraph-file:path={f}", 3)

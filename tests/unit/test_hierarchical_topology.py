"""The hierarchical family: exact average inside groups, a topology between them.

W is checked against its definition written out entry by entry, W[i, j] = W_outer[i // G, j // G] / G,
and the plans against the dense matrix's.
"""
import numpy as np
import pytest

import topologies
from dsgd.comm.plan import make_plan
from dsgd.train.cli import fill_group_size


def by_definition(outer_W, G):
    groups = outer_W.shape[0]
    n = groups * G
    W = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            W[i, j] = outer_W[i // G, j // G] / G
    return W


@pytest.mark.parametrize("outer, groups, G", [("ring", 4, 3), ("torus", 9, 2), ("exponential", 8, 2),
                                             ("one-peer-exponential", 8, 4), ("complete", 3, 5)])
def test_w_averages_inside_groups_then_mixes_groups(outer, groups, G):
    between = topologies.build(outer, groups)
    topo = topologies.from_spec(f"hierarchical:group={G},outer={outer}", groups * G)
    assert topo.period == between.period
    for k in range(topo.period):
        expected = by_definition(between.W(k), G)
        np.testing.assert_allclose(topo.W(k), expected, rtol=0, atol=1e-15)
        np.testing.assert_allclose(np.asarray(topo.step(k)), expected, rtol=0, atol=1e-15)
        np.testing.assert_allclose(np.asarray(topo.step(k).as_sparse()), expected, rtol=0, atol=1e-15)
        topologies.validate_mixing_matrix(topo.W(k))


def test_without_options_it_is_the_exponential_graph_over_single_workers():
    for n in (1, 2, 5, 8):
        np.testing.assert_allclose(topologies.build("hierarchical", n).W(0), topologies.build("exponential", n).W(0),
                                   rtol=0, atol=1e-15)


def test_inside_every_and_outside_every_rounds():
    topo = topologies.from_spec("hierarchical:group=2,outer=ring,inner_every=2,outer_every=6", 8)
    ring = topologies.build("ring", 4)
    block = by_definition(np.eye(4), 2)
    assert topo.period == 6
    for k in range(12):
        W = topo.W(k)
        if (k + 1) % 6 == 0:
            np.testing.assert_allclose(W, by_definition(ring.W(0), 2), atol=1e-15)
        elif (k + 1) % 2 == 0:
            np.testing.assert_allclose(W, block, atol=1e-15)
        else:
            assert np.array_equal(W, np.eye(8)) and topo.step(k).kind == "identity"


@pytest.mark.parametrize("size, K, kind", [(8, 1, "hierarchical"), (4, 2, "hierarchical"), (2, 4, "sparse"),
                                           (1, 8, "sparse")])
def test_whole_groups_on_ranks_plan_an_allreduce_and_an_exchange(size, K, kind):
    topo = topologies.from_spec("hierarchical:group=2,outer=ring", size * K)
    for rank in range(size):
        plan = make_plan(topo.step(0), rank, size, K)
        assert plan.kind == kind
        if kind == "hierarchical":
            assert plan.group_ranks == 2 // K
        else:  # a rank holds several groups: the same W as a neighbour exchange
            assert plan == make_plan(topo.W(0), rank, size, K)
        assert make_plan(topo.step(0), rank, size, K, exchange_only=True) == make_plan(topo.W(0), rank, size, K)


@pytest.mark.parametrize("spec, message", [
    ("hierarchical:group=3", "multiple of 3"),
    ("hierarchical:group=2,outer=ring", "between its 2 group"),
    ("hierarchical:group=1,outer=random-out", "push graph"),
    ("hierarchical:group=1,outer=nosuch", "must name a topology family"),
])
def test_bad_hierarchical_specs_are_refused_in_one_line(spec, message):
    with pytest.raises(topologies.TopologyError, match=message):
        topologies.from_spec(spec, 4)


class FakeComm:
    def __init__(self, sizes):
        self.sizes = sizes

    def allgather_object(self, obj):
        return self.sizes


class FakeCfg:
    def __init__(self, topology, K):
        self.gossip = type("G", (), {"topology": topology})()
        self.run = type("R", (), {"workers_per_rank": K})()


def test_the_group_is_the_launchers_ranks_per_node_times_workers_per_rank():
    cfg = FakeCfg("hierarchical:outer=torus", 3)
    assert fill_group_size(FakeComm([4, 4, 4]), cfg) is None
    assert cfg.gossip.topology == "hierarchical:outer=torus,group=12"
    cfg = FakeCfg("hierarchical", 1)
    fill_group_size(FakeComm([2, 2]), cfg)
    assert cfg.gossip.topology == "hierarchical:group=2"
    cfg = FakeCfg("hierarchical:group=5", 1)
    fill_group_size(FakeComm([2, 3]), cfg)
    assert cfg.gossip.topology == "hierarchical:group=5", "an explicit group is kept"
    error = fill_group_size(FakeComm([2, 3]), FakeCfg("hierarchical:outer=ring", 1))
    assert "different numbers of ranks" in error and "group=G" in error

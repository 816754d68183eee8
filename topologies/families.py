"""The registry of topology families and the two ways to build one: `build` and `from_spec`.

Each family is a small function from (n, weight rule, options) to a
Topology; FAMILIES maps its name to it. Weight rules live in weights.py,
graphs in graphs.py, time-varying mixing in dynamic.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple, Union

import networkx as nx
import numpy as np

from . import dynamic, files, graphs, pushing, steps
from .errors import TopologyError
from .options import as_int, as_path, as_probability, parse_spec
from .topology import Topology, graph_of
from .validate import validate_mixing_matrix
from .weights import mixing_matrix

Weights = Union[str, np.ndarray]
UNDIRECTED_RULES = ("metropolis", "uniform", "max-degree", "explicit")
ONE_RULE = ("uniform",)


@dataclass(frozen=True)
class Family:
    """A named way to build a Topology.

    make(n, weights, **options) receives a rule already checked against
    `weight_rules` ("default" replaced by `default_weights`); options not
    given (or given as None) are left out, so make's own defaults apply.
    """
    name: str
    summary: str
    make: Callable[..., Topology]
    options: Tuple[str, ...] = ()
    default_weights: str = "metropolis"
    weight_rules: Tuple[str, ...] = UNDIRECTED_RULES


def _weighted(name: str, G: nx.Graph, weights: Weights, **options: Any) -> Topology:
    """Static topology: graph G with W from a weight rule or an explicit matrix."""
    label = weights if isinstance(weights, str) else "explicit"
    return Topology.static(name, mixing_matrix(G, weights), G, weights=label,
                           default_weights=FAMILIES[name].default_weights, options=options)


def _complete(n: int, weights: Weights) -> Topology:
    return _weighted("complete", graphs.complete(n), weights)


def _ring(n: int, weights: Weights) -> Topology:
    return _weighted("ring", graphs.ring(n), weights)


def _lattice(name: str, n: int, weights: Weights, rows: Any, cols: Any, minimum: int) -> Topology:
    rows = None if rows is None else as_int(name, "rows", rows, minimum=1)
    cols = None if cols is None else as_int(name, "cols", cols, minimum=1)
    rows, cols = graphs.lattice_shape(name, n, rows, cols, minimum)
    G = graphs.lattice(rows, cols, wrap=name == "torus")
    return _weighted(name, G, weights, rows=rows, cols=cols)


def _torus(n: int, weights: Weights, rows: Any = None, cols: Any = None) -> Topology:
    return _lattice("torus", n, weights, rows, cols, minimum=3)


def _grid(n: int, weights: Weights, rows: Any = None, cols: Any = None) -> Topology:
    return _lattice("grid", n, weights, rows, cols, minimum=1)


def _star(n: int, weights: Weights) -> Topology:
    return _weighted("star", graphs.star(n), weights)


def _hypercube(n: int, weights: Weights) -> Topology:
    return _weighted("hypercube", graphs.hypercube(n), weights)


def _exponential(n: int, weights: Weights) -> Topology:
    return _weighted("exponential", graphs.exponential(n), weights)


def _random_regular(n: int, weights: Weights, degree: Any = None, seed: Any = 0) -> Topology:
    # n * degree must be even: 3 for even n, 4 for odd n, never more than n - 1.
    degree = min(n - 1, 3 if n % 2 == 0 else 4) if degree is None else as_int(
        "random-regular", "degree", degree, minimum=0)
    seed = as_int("random-regular", "seed", seed, minimum=0)
    G = graphs.random_regular(n, degree, seed)
    return _weighted("random-regular", G, weights, degree=degree, seed=seed)


def _erdos_renyi(n: int, weights: Weights, p: Any = None, seed: Any = 0) -> Topology:
    if p is None:  # twice the connectivity threshold ln(n)/n, so few redraws are needed
        p = min(1.0, 2 * math.log(n) / n) if n > 1 else 1.0
    p = as_probability("erdos-renyi", "p", p)
    seed = as_int("erdos-renyi", "seed", seed, minimum=0)
    G = graphs.erdos_renyi(n, p, seed)
    return _weighted("erdos-renyi", G, weights, p=p, seed=seed)


def _graph_file(n: int, weights: Weights, path: Any = None, format: Any = "auto") -> Topology:
    G = files.load_graph_file(as_path("graph-file", "path", path), n, format)
    return _weighted("graph-file", G, weights, path=path, format=format)


def _refuse_split(G: nx.Graph, what: str, why: str) -> None:
    """A user's graph or matrix whose workers cannot all reach each other is refused by name: mixing
    over it never reaches consensus (an undirected graph: connected; a directed one: strongly)."""
    if G.number_of_nodes() <= 1:
        return
    parts = list(nx.strongly_connected_components(G) if G.is_directed() else nx.connected_components(G))
    if len(parts) > 1:
        shown = "; ".join(str(sorted(p)) for p in sorted(parts, key=min)[:3]) + ("; ..." if len(parts) > 3 else "")
        kind = "strongly connected" if G.is_directed() else "connected"
        raise TopologyError(f"{what} is not {kind}: {len(parts)} groups of workers ({shown}) do not all reach "
                            f"each other, so {why}")


def _matrix_file(n: int, weights: Weights, path: Any = None) -> Topology:
    path = as_path("matrix-file", "path", path)
    W = files.load_matrix_file(path, n)
    validate_mixing_matrix(W, name=f"matrix file '{path}'")
    directed = not np.array_equal(W > 0, (W > 0).T)
    G = graph_of(W, directed)
    _refuse_split(G, f"matrix file '{path}'", "its workers would never agree")
    return Topology.static("matrix-file", W, G, weights="file",
                           default_weights="file", options={"path": path})


def from_graph(G: nx.Graph, weights: Weights = "default") -> Topology:
    """A user's undirected networkx graph on nodes 0..n-1 (worker i is node i), weighted like a
    graph file ("default": Metropolis-Hastings). Refused when it is directed or not connected."""
    if not isinstance(G, nx.Graph) or G.is_directed():
        raise TopologyError("from_graph takes an undirected networkx graph (for push-sum, give a column-"
                            "stochastic matrix to from_matrix)")
    n = G.number_of_nodes()
    if sorted(G.nodes) != list(range(n)):
        raise TopologyError(f"the graph's nodes must be 0..{n - 1} (worker i is node i), got {sorted(G.nodes)[:5]}...")
    _refuse_split(G, "the graph", "its workers would never agree")
    return _weighted("graph-file", G, _resolve_weights(FAMILIES["graph-file"], weights), path="<networkx graph>")


def from_matrix(W: Any) -> Topology:
    """A user's mixing matrix W (numpy, n x n), checked like a matrix file: doubly stochastic, or
    column stochastic for push-sum; every worker reaching every other."""
    W = np.array(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise TopologyError(f"a mixing matrix must be square, got shape {W.shape}")
    stochastic = "doubly" if np.allclose(W.sum(1), 1) else "column"
    if stochastic == "doubly":
        validate_mixing_matrix(W, name="the matrix")
    elif not (np.all(W >= 0) and np.allclose(W.sum(0), 1)):
        raise TopologyError("the matrix is neither doubly stochastic nor column stochastic (a push graph)")
    directed = not np.array_equal(W > 0, (W > 0).T)
    G = graph_of(W, directed or stochastic == "column")
    _refuse_split(G, "the matrix", "its workers would never agree")
    return Topology.static("matrix-file", W, G, weights="file", default_weights="file",
                           options={"path": "<numpy matrix>"}, stochastic=stochastic)


def _one_peer_exponential(n: int, weights: Weights) -> Topology:
    peers = dynamic.one_peer_exponential_peers(n)
    return Topology("one-peer-exponential", n, dynamic.one_peer_exponential(n),
                    period=dynamic.one_peer_exponential_period(n), directed=True,
                    weights=weights, default_weights="uniform",
                    sparse_step=lambda k: steps.half_half_sparse(peers(k)))


def _random_one_peer(n: int, weights: Weights, seed: Any = 0, period: Any = 1000) -> Topology:
    seed = as_int("random-one-peer", "seed", seed, minimum=0)
    period = as_int("random-one-peer", "period", period, minimum=1)
    peers = dynamic.random_one_peer_peers(n, seed)
    return Topology("random-one-peer", n, dynamic.random_one_peer(n, seed), period=period,
                    directed=True, weights=weights, default_weights="uniform",
                    options={"seed": seed, "period": period},
                    sparse_step=lambda k: steps.half_half_sparse(peers(k)))


def _hierarchical(n: int, weights: Weights, group: Any = 1, outer: Any = "exponential", inner_every: Any = 1,
                  outer_every: Any = 1) -> Topology:
    # group=1 makes it the outer family itself; the trainer fills in the launcher's ranks per node
    # x workers per rank when the spec names no group.
    group = as_int("hierarchical", "group", group, minimum=1)
    inner_every = as_int("hierarchical", "inner_every", inner_every, minimum=1)
    outer_every = as_int("hierarchical", "outer_every", outer_every, minimum=1)
    if n % group:
        raise TopologyError(f"hierarchical with group={group} needs n to be a multiple of {group}, got n={n}")
    outer_name = str(outer)
    if outer_name not in FAMILIES or outer_name in ("hierarchical", "matrix-file", "graph-file", "digraph-file"):
        raise TopologyError(f"hierarchical outer={outer_name!r} must name a topology family for the groups "
                            f"(such as ring, torus, exponential, one-peer-exponential, complete)")
    try:
        between = build(outer_name, n // group)
    except TopologyError as e:
        raise TopologyError(f"hierarchical with group={group}: between its {n // group} group(s): {e}") from None
    if between.stochastic != "doubly":
        raise TopologyError(f"hierarchical outer={outer_name} is a push graph; the groups need a doubly-stochastic W")
    period = math.lcm(inner_every, outer_every * between.period)
    inside_only = steps.identity(n // group)

    def outer_of(k: int):
        if (k + 1) % outer_every == 0:
            return between.step((k + 1) // outer_every - 1)
        if (k + 1) % inner_every == 0:
            return inside_only
        return None

    def sparse_step(k: int):
        outer_step = outer_of(k)
        return steps.identity(n) if outer_step is None else steps.Hierarchical(group, outer_step)

    return Topology("hierarchical", n, lambda k: np.asarray(sparse_step(k).dense()), period=period,
                    directed=between.directed, weights=weights, default_weights="uniform",
                    options={"group": group, "outer": outer_name, "inner_every": inner_every,
                             "outer_every": outer_every},
                    sparse_step=sparse_step)


def _directed_exponential(n: int, weights: Weights) -> Topology:
    peers = pushing.directed_exponential_peers(n)
    return Topology("directed-exponential", n, pushing.directed_exponential(n),
                    period=pushing.directed_exponential_period(n), directed=True,
                    weights=weights, default_weights="uniform",
                    sparse_step=lambda k: steps.push_sparse(peers(k)))


def _random_out(n: int, weights: Weights, s: Any = 1, seed: Any = 0, period: Any = 1000) -> Topology:
    s = as_int("random-out", "s", s, minimum=1)
    if s > n - 1:
        raise TopologyError(f"random-out with s={s} needs n >= s + 1 nodes, got n={n}")
    seed = as_int("random-out", "seed", seed, minimum=0)
    period = as_int("random-out", "period", period, minimum=1)
    peers = pushing.random_out_peers(n, s, seed)
    return Topology("random-out", n, pushing.random_out(n, s, seed), period=period, directed=True,
                    weights=weights, default_weights="uniform", stochastic="column",
                    options={"s": s, "seed": seed, "period": period},
                    sparse_step=lambda k: steps.push_sparse(peers(k)))


def _digraph_file(n: int, weights: Weights, path: Any = None) -> Topology:
    path = as_path("digraph-file", "path", path)
    edges = files.read_matrix(path, "directed graph file")
    if edges.ndim != 2 or edges.shape[1] != 2 or not np.all(edges == np.round(edges)):
        raise TopologyError(f"directed graph file '{path}' must hold rows 'j i' (j pushes to i), integers")
    if len(edges) and (edges.min() < 0 or edges.max() >= n):
        raise TopologyError(f"directed graph file '{path}' names nodes outside 0..{n - 1}")
    P = pushing.push_matrix(pushing.out_peers_of(edges.astype(int), n))
    G = graph_of(P, True)
    _refuse_split(G, f"directed graph file '{path}'", "push-sum needs every worker to reach every other")
    return Topology.static("digraph-file", P, G, weights="uniform", default_weights="uniform",
                           options={"path": path}, stochastic="column")


_ALL = [
    Family("complete", "everyone averages with everyone: W = 1/n (an allreduce)",
           _complete, default_weights="uniform"),
    Family("ring", "cycle, n >= 3; default 1/3 to self and to each neighbour",
           _ring, default_weights="uniform"),
    Family("torus", "rows x cols grid with wrap-around (both >= 3); "
           "default 1/5 to self and 4 neighbours",
           _torus, ("rows", "cols"), default_weights="uniform"),
    Family("grid", "rows x cols mesh without wrap-around; Metropolis-Hastings",
           _grid, ("rows", "cols")),
    Family("star", "hub 0 linked to every other node; Metropolis-Hastings", _star),
    Family("hypercube", "n = 2^d, neighbours differ in one bit; default 1/(d+1)",
           _hypercube, default_weights="uniform"),
    Family("exponential", "directed, i sends to i + 2^k, k < ceil(log2 n); "
           "1/(ceil(log2 n)+1) (Ying et al. 2021)",
           _exponential, default_weights="uniform", weight_rules=ONE_RULE),
    Family("one-peer-exponential", "time-varying, period ceil(log2 n): "
           "i averages with i + 2^(t mod period)",
           _one_peer_exponential, default_weights="uniform", weight_rules=ONE_RULE),
    Family("random-regular", "random connected regular graph; default uniform weights",
           _random_regular, ("degree", "seed"), default_weights="uniform"),
    Family("erdos-renyi", "random connected G(n, p) graph; Metropolis-Hastings",
           _erdos_renyi, ("p", "seed")),
    Family("random-one-peer", "time-varying directed: i averages with a seeded random peer, "
           "no fixed points",
           _random_one_peer, ("seed", "period"), default_weights="uniform",
           weight_rules=ONE_RULE),
    Family("hierarchical", "groups of G workers (one per node): exact average inside each group, "
           "the `outer` family between groups; inside every inner_every rounds, between every outer_every",
           _hierarchical, ("group", "outer", "inner_every", "outer_every"), default_weights="uniform",
           weight_rules=ONE_RULE),
    Family("directed-exponential", "time-varying push graph, period ceil(log2 n): i pushes half to "
           "i + 2^(t mod period)", _directed_exponential, default_weights="uniform", weight_rules=ONE_RULE),
    Family("random-out", "time-varying push graph (column-stochastic): each step every node pushes "
           "to s random others, 1/(s+1) each; for push-sum", _random_out, ("s", "seed", "period"),
           default_weights="uniform", weight_rules=ONE_RULE),
    Family("digraph-file", "your directed graph: rows 'j i' (j pushes to i); column-stochastic "
           "1/(out-degree+1); for push-sum", _digraph_file, ("path",), default_weights="uniform",
           weight_rules=ONE_RULE),
    Family("graph-file", "your undirected graph: edge list or adjacency (text or .npy); "
           "Metropolis-Hastings",
           _graph_file, ("path", "format")),
    Family("matrix-file", "your mixing matrix W (.npy or text), checked doubly stochastic",
           _matrix_file, ("path",), default_weights="file", weight_rules=("file",)),
]
FAMILIES: Dict[str, Family] = {family.name: family for family in _ALL}


def _resolve_weights(family: Family, weights: Weights) -> Weights:
    if not isinstance(weights, str):
        if "explicit" not in family.weight_rules:
            raise TopologyError(f"{family.name} does not take an explicit weight matrix")
        return weights
    rule = family.default_weights if weights == "default" else weights
    if rule not in family.weight_rules or rule == "explicit":
        known = ", ".join(["default"] + [r for r in family.weight_rules if r != "explicit"])
        raise TopologyError(f"{family.name} takes weights {known}; got '{weights}'")
    return rule


def build(name: str, n: int, weights: Weights = "default", **options: Any) -> Topology:
    """Build the topology `name` on n nodes.

    Args:
        name: a key of FAMILIES.
        n: number of nodes (workers), >= 1.
        weights: "default" (the family's rule), "metropolis", "uniform",
            "max-degree", or an explicit (n, n) matrix for undirected families.
        options: family options, e.g. rows=4, cols=4 for torus.

    Raises:
        TopologyError: with a one-line message for any unusable input.

    Example:
        >>> float(build("torus", 16).W(0)[0, 1])
        0.2
    """
    family = _family(name, options)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise TopologyError(f"n must be a positive integer, got {n!r}")
    given = {k: v for k, v in options.items() if v is not None}
    return family.make(int(n), _resolve_weights(family, weights), **given)


def _family(name: str, options: Dict[str, Any]) -> Family:
    """The family NAME, refusing options it does not take."""
    if name not in FAMILIES:
        raise TopologyError(f"unknown topology '{name}' (known: {', '.join(FAMILIES)})")
    family = FAMILIES[name]
    unknown = sorted(set(options) - set(family.options))
    if unknown:
        known = f"known: {', '.join(family.options)}" if family.options else "it takes none"
        raise TopologyError(f"unknown option '{unknown[0]}' for {name} ({known})")
    return family


def check_spec(spec: str) -> None:
    """Refuse, before any n is known, what no n can build: an unknown family, an option or a weight rule
    it does not take (what depends on n, a torus that does not factor, is found when it is built)."""
    name, options = parse_spec(spec)
    weights = options.pop("weights", "default")
    _resolve_weights(_family(name, options), weights)


def from_spec(spec: str, n: int) -> Topology:
    """Build from a spec such as "torus:rows=4,cols=4" or "graph-file:path=g.txt,weights=uniform".

    Option values that look like numbers become int or float; `weights=`
    selects the weight rule.
    """
    name, options = parse_spec(spec)
    weights = options.pop("weights", "default")
    return build(name, n, weights, **options)

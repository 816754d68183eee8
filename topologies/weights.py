"""Weight rules: turn a communication graph into a doubly-stochastic mixing matrix.

Every rule fills W[i, j] for the edges of the graph and puts the rest of
row i on the diagonal, so rows sum to 1 by construction; the rules below are
the ones that also make the columns sum to 1 (checked by validate).
"""
from __future__ import annotations

from typing import Callable, Dict, Union

import networkx as nx
import numpy as np

from .errors import TopologyError
from .validate import validate_mixing_matrix

WeightRule = Callable[[nx.Graph], np.ndarray]


def _receive_lists(G: nx.Graph):
    """For each node i, the nodes j it receives from (j != i)."""
    if G.is_directed():
        return [[j for j in G.predecessors(i) if j != i] for i in range(len(G))]
    return [[j for j in G.neighbors(i) if j != i] for i in range(len(G))]


def _fill_diagonal(W: np.ndarray) -> np.ndarray:
    np.fill_diagonal(W, 0.0)
    np.fill_diagonal(W, 1.0 - W.sum(axis=1))
    return W


def _undirected_only(G: nx.Graph, rule: str) -> None:
    if G.is_directed():
        raise TopologyError(f"{rule} weights need an undirected graph; use weights=uniform")


def metropolis(G: nx.Graph) -> np.ndarray:
    """Metropolis-Hastings: W[i, j] = 1 / (1 + max(deg_i, deg_j)) on edges.

    Symmetric and doubly stochastic for any undirected graph (Xiao & Boyd 2004).
    """
    _undirected_only(G, "metropolis")
    n = len(G)
    deg = [G.degree(i) - 2 * G.has_edge(i, i) for i in range(n)]
    W = np.zeros((n, n))
    for i, j in G.edges:
        if i != j:
            W[i, j] = W[j, i] = 1.0 / (1 + max(deg[i], deg[j]))
    return _fill_diagonal(W)


def max_degree(G: nx.Graph) -> np.ndarray:
    """Every edge weighs 1 / (1 + max degree of the graph); symmetric, doubly stochastic."""
    _undirected_only(G, "max-degree")
    n = len(G)
    recv = _receive_lists(G)
    w = 1.0 / (1 + max((len(r) for r in recv), default=0))
    W = np.zeros((n, n))
    for i, js in enumerate(recv):
        W[i, js] = w
    return _fill_diagonal(W)


def uniform(G: nx.Graph) -> np.ndarray:
    """Node i weighs itself and each node it receives from by 1 / (in-degree + 1).

    Doubly stochastic only when every node has the same in- and out-degree
    (regular graphs, circulant digraphs such as the exponential graph).
    """
    n = len(G)
    recv = _receive_lists(G)
    indeg = sorted({len(r) for r in recv})
    outdeg = sorted({sum(i in r for r in recv) for i in range(n)})
    if len(indeg) > 1 or indeg != outdeg:
        raise TopologyError(
            f"uniform weights need a regular graph, but degrees range from "
            f"{min(indeg + outdeg)} to {max(indeg + outdeg)}; use weights=metropolis")
    W = np.zeros((n, n))
    for i, js in enumerate(recv):
        W[i, js + [i]] = 1.0 / (len(js) + 1)  # self weight set, not 1 - sum: ring gets exactly 1/3
    return W


WEIGHT_RULES: Dict[str, WeightRule] = {
    "metropolis": metropolis,
    "uniform": uniform,
    "max-degree": max_degree,
}


def mixing_matrix(G: nx.Graph, rule: Union[str, np.ndarray]) -> np.ndarray:
    """W for graph G under a named rule, or an explicit matrix checked against G.

    Args:
        G: graph on nodes 0..n-1; a DiGraph edge j -> i means j sends to i.
        rule: a key of WEIGHT_RULES, or an (n, n) array to use as W.
    """
    if isinstance(rule, str):
        if rule not in WEIGHT_RULES:
            known = ", ".join(WEIGHT_RULES)
            raise TopologyError(f"unknown weight rule '{rule}' (known: {known})")
        W = WEIGHT_RULES[rule](G)
        name = f"{rule} W"
    else:
        validate_mixing_matrix(rule, G, name="given W")
        return np.array(rule, dtype=np.float64)
    validate_mixing_matrix(W, G, name=name)
    return W

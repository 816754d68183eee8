"""Checks that a matrix is a usable mixing matrix (see algorithms.md, "The one operation")."""
from __future__ import annotations

from typing import Optional

import networkx as nx
import numpy as np

from .errors import TopologyError


def _num(x: float) -> str:
    return f"{float(x):.12g}"


def _check_shape(W: np.ndarray, name: str) -> None:
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise TopologyError(f"{name} must be a square matrix, got shape {W.shape}")
    if W.shape[0] < 1:
        raise TopologyError(f"{name} is empty")
    bad = np.argwhere(~np.isfinite(W))
    if len(bad):
        i, j = bad[0]
        raise TopologyError(f"{name}[{i}, {j}] = {W[i, j]} is not finite")
    bad = np.argwhere(W < 0)
    if len(bad):
        i, j = bad[0]
        raise TopologyError(f"{name}[{i}, {j}] = {_num(W[i, j])} is negative")


def _check_sums(W: np.ndarray, tol: float, name: str, kind: str = "doubly") -> None:
    axes = ((1, "row"), (0, "column")) if kind == "doubly" else ((0, "column"),)
    for axis, what in axes:
        sums = W.sum(axis=axis)
        off = np.flatnonzero(np.abs(sums - 1.0) > tol)
        if len(off):
            k = off[0]
            raise TopologyError(
                f"{name} {what} {k} sums to {_num(sums[k])}, not 1 (tolerance {tol:g})"
            )


def allowed_pattern(graph: nx.Graph, n: int) -> np.ndarray:
    """Boolean (n, n): True where W[i, j] may be positive (i == j, or j sends to i)."""
    if set(graph.nodes) != set(range(n)):
        raise TopologyError(f"graph nodes must be 0..{n - 1}, got {graph.number_of_nodes()} nodes")
    A = nx.to_numpy_array(graph, nodelist=range(n), weight=None, dtype=float) != 0
    if graph.is_directed():
        A = A.T  # edge j -> i (j sends to i) allows W[i, j]
    return A | np.eye(n, dtype=bool)


def _check_sparsity(W: np.ndarray, graph: nx.Graph, name: str) -> None:
    bad = np.argwhere((W > 0) & ~allowed_pattern(graph, W.shape[0]))
    if len(bad):
        i, j = bad[0]
        link = f"{j} -> {i} is not an edge" if graph.is_directed() else (
            f"nodes {i} and {j} are not neighbours")
        raise TopologyError(f"{name}[{i}, {j}] = {_num(W[i, j])} but {link} in the graph")


def validate_mixing_matrix(W: np.ndarray, graph: Optional[nx.Graph] = None,
                           tol: float = 1e-9, name: str = "W", kind: str = "doubly") -> None:
    """Raise TopologyError unless W is a doubly-stochastic (or, kind="column", column-stochastic) mixing matrix.

    Args:
        W: candidate (n, n) matrix; x_i <- sum_j W[i, j] x_j.
        graph: if given, W[i, j] > 0 is allowed only for i == j or an edge
            (for a DiGraph, an edge j -> i: j sends to i).
        tol: allowed deviation of every row and column sum from 1.
        name: what to call the matrix in the message.
        kind: "doubly" (rows and columns sum to 1: gossip) or "column" (what each node sends
            sums to 1: push-sum on directed graphs).

    Checks, in order: square, finite, non-negative, rows sum to 1, columns
    sum to 1, sparsity within the graph.
    """
    try:
        W = np.asarray(W, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TopologyError(f"{name} is not a numeric matrix ({exc})") from None
    _check_shape(W, name)
    _check_sums(W, tol, name, kind)
    if graph is not None:
        _check_sparsity(W, graph, name)

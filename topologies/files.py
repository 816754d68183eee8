"""User-supplied graphs and mixing matrices: text (whitespace or commas, # comments) or .npy.

Graph files hold either an edge list ("i j" per line) or an n x n adjacency
matrix; matrix files hold W itself. Nodes are 0..n-1 and must match n.
"""
from __future__ import annotations

import re
from typing import List

import networkx as nx
import numpy as np

from .errors import TopologyError

_SEPARATORS = re.compile(r"[\s,]+")
GRAPH_FORMATS = ("auto", "edges", "adjacency")


def _read_table(path: str, what: str) -> List[List[float]]:
    """Numeric rows of a text file, comments and blank lines dropped."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(f"cannot read {what} '{path}': {getattr(exc, 'strerror', None) or exc}")
    rows = []
    for number, line in enumerate(lines, 1):
        tokens = [t for t in _SEPARATORS.split(line.split("#", 1)[0].strip()) if t]
        if not tokens:
            continue
        try:
            rows.append([float(t) for t in tokens])
        except ValueError:
            bad = next(t for t in tokens if not _is_number(t))
            raise TopologyError(f"{what} '{path}' line {number}: '{bad}' is not a number") from None
    if not rows:
        raise TopologyError(f"{what} '{path}' holds no numbers")
    return rows


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _read_npy(path: str, what: str) -> np.ndarray:
    try:
        A = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise TopologyError(f"cannot read {what} '{path}': No such file or directory") from None
    except (OSError, ValueError, EOFError) as exc:
        raise TopologyError(f"{what} '{path}' is not a valid .npy file ({exc})") from None
    if not isinstance(A, np.ndarray) or A.dtype.kind not in "biuf":
        raise TopologyError(f"{what} '{path}' does not hold a numeric array")
    return A.astype(np.float64)


def read_matrix(path: str, what: str = "matrix file") -> np.ndarray:
    """A 2-D float64 array from .npy or text; ragged text rows are an error."""
    if path.endswith(".npy"):
        A = _read_npy(path, what)
        if A.ndim != 2:
            raise TopologyError(f"{what} '{path}' holds a {A.ndim}-D array, expected a matrix")
        return A
    rows = _read_table(path, what)
    width = len(rows[0])
    for k, row in enumerate(rows):
        if len(row) != width:
            raise TopologyError(
                f"{what} '{path}': row {k} has {len(row)} numbers, row 0 has {width}")
    return np.array(rows, dtype=np.float64)


def load_matrix_file(path: str, n: int) -> np.ndarray:
    """W from a file; shape must be (n, n). Validation as a mixing matrix is the caller's."""
    W = read_matrix(path)
    if W.shape != (n, n):
        raise TopologyError(f"matrix file '{path}' is {W.shape[0]}x{W.shape[1]}, but n={n}")
    return W


def _graph_from_adjacency(A: np.ndarray, path: str, n: int) -> nx.Graph:
    if A.shape != (n, n):
        raise TopologyError(f"graph file '{path}' is a {A.shape[0]}x{A.shape[1]} matrix, but n={n}")
    if not np.isfinite(A).all() or not np.array_equal(A != 0, (A != 0).T):
        raise TopologyError(f"graph file '{path}': adjacency matrix is not finite and symmetric")
    G = nx.Graph()
    G.add_nodes_from(range(n))
    G.add_edges_from((int(i), int(j)) for i, j in zip(*np.nonzero(A)) if i < j)
    return G


def _graph_from_edges(A: np.ndarray, path: str, n: int) -> nx.Graph:
    if A.shape[1] != 2:
        raise TopologyError(
            f"graph file '{path}': edge lines need 2 node numbers, got {A.shape[1]}")
    if not np.isfinite(A).all() or not np.array_equal(A, np.round(A)) or A.min() < 0:
        raise TopologyError(f"graph file '{path}': node numbers must be integers >= 0")
    nodes = int(A.max()) + 1
    if nodes != n:
        raise TopologyError(f"graph file '{path}' names nodes 0..{nodes - 1}, but n={n}")
    G = nx.Graph()
    G.add_nodes_from(range(n))
    # Self-loops are dropped: every node keeps part of its own value anyway.
    G.add_edges_from((int(i), int(j)) for i, j in A if i != j)
    return G


def load_graph_file(path: str, n: int, fmt: str = "auto") -> nx.Graph:
    """Undirected graph on 0..n-1 from an edge list or adjacency matrix; must be connected.

    fmt "auto" reads a .npy file, or a text table of n rows of n numbers with
    n > 2, as an adjacency matrix, and anything else as an edge list.
    """
    if fmt not in GRAPH_FORMATS:
        raise TopologyError(
            f"graph-file format must be one of {', '.join(GRAPH_FORMATS)}, got {fmt!r}")
    A = read_matrix(path, "graph file")
    square = A.shape == (n, n) and (n > 2 or path.endswith(".npy"))
    adjacency = fmt == "adjacency" or (fmt == "auto" and square)
    G = (_graph_from_adjacency if adjacency else _graph_from_edges)(A, path, n)
    if not nx.is_connected(G):
        parts = nx.number_connected_components(G)
        raise TopologyError(f"graph file '{path}' is disconnected ({parts} components)")
    return G

"""Communication graphs on nodes 0..n-1 (networkx), before any weights are chosen.

A DiGraph edge j -> i means j sends to i. Random graphs are redrawn from
derived seeds until connected, a bounded number of times.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import networkx as nx
import numpy as np

from .errors import TopologyError

MAX_DRAWS = 100  # redraws of a random graph before giving up on connectivity


def _empty(n: int, directed: bool = False) -> nx.Graph:
    G = nx.DiGraph() if directed else nx.Graph()
    G.add_nodes_from(range(n))
    return G


def complete(n: int) -> nx.Graph:
    return nx.complete_graph(n)


def ring(n: int) -> nx.Graph:
    if n < 3:
        raise TopologyError(f"ring needs n >= 3, got n={n} (for n=2 use complete)")
    return nx.cycle_graph(n)


def star(n: int) -> nx.Graph:
    """Node 0 is the hub."""
    return nx.star_graph(n - 1) if n > 1 else _empty(1)


def hypercube(n: int) -> nx.Graph:
    """Nodes i and i XOR 2^b are neighbours (n a power of two)."""
    if n & (n - 1):
        raise TopologyError(f"hypercube needs n to be a power of two, got n={n}")
    G = _empty(n)
    G.add_edges_from((i, i ^ (1 << b)) for i in range(n) for b in range(n.bit_length() - 1))
    return G


def exponential(n: int) -> nx.DiGraph:
    """Node i sends to i + 2^k mod n for k = 0 .. ceil(log2 n) - 1 (Ying et al. 2021)."""
    G = _empty(n, directed=True)
    hops = math.ceil(math.log2(n)) if n > 1 else 0
    G.add_edges_from((i, (i + 2 ** k) % n) for i in range(n) for k in range(hops))
    return G


def lattice(rows: int, cols: int, wrap: bool) -> nx.Graph:
    """rows x cols mesh, node r * cols + c; with wrap, a torus."""
    G = _empty(rows * cols)
    for r in range(rows):
        for c in range(cols):
            if wrap or c + 1 < cols:
                G.add_edge(r * cols + c, r * cols + (c + 1) % cols)
            if wrap or r + 1 < rows:
                G.add_edge(r * cols + c, ((r + 1) % rows) * cols + c)
    return G


def lattice_shape(family: str, n: int, rows: Optional[int], cols: Optional[int],
                  minimum: int) -> Tuple[int, int]:
    """(rows, cols) with rows * cols == n and both >= minimum; defaults are the most square."""
    need = f"{family} needs n = rows*cols with rows, cols >= {minimum}, got n={n}"
    if rows is None and cols is None:
        fits = [r for r in range(minimum, math.isqrt(n) + 1) if n % r == 0 and n // r >= minimum]
        if not fits:
            raise TopologyError(need)
        rows = fits[-1]
    if rows is None:
        rows = n // cols if n % cols == 0 else 0
    if cols is None:
        cols = n // rows if rows and n % rows == 0 else 0
    if rows * cols != n or min(rows, cols) < minimum:
        raise TopologyError(f"{need} and rows={rows or '?'}, cols={cols or '?'}")
    return rows, cols


def _derived_seed(seed: int, attempt: int) -> int:
    if attempt == 0:
        return seed
    return int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])


def connected_draw(draw: Callable[[int], nx.Graph], seed: int, what: str) -> nx.Graph:
    """draw(seed) until connected: the given seed first, then seeds derived from it."""
    for attempt in range(MAX_DRAWS):
        G = draw(_derived_seed(seed, attempt))
        if nx.is_connected(G):
            return G
    raise TopologyError(f"{what} stayed disconnected after {MAX_DRAWS} draws from seed {seed}")


def random_regular(n: int, degree: int, seed: int) -> nx.Graph:
    if degree >= n or (n * degree) % 2:
        raise TopologyError(
            f"random-regular needs degree < n and n*degree even, got n={n}, degree={degree}")
    return connected_draw(lambda s: nx.random_regular_graph(degree, n, seed=s), seed,
                          f"random-regular graph with n={n}, degree={degree}")


def erdos_renyi(n: int, p: float, seed: int) -> nx.Graph:
    return connected_draw(lambda s: nx.gnp_random_graph(n, p, seed=s), seed,
                          f"erdos-renyi graph with n={n}, p={p:g} (raise p)")

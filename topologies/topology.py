"""The Topology object: W(t) and the graph at step t, plus neighbour lists read off W."""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import networkx as nx
import numpy as np

from . import spectra
from .steps import Average, Identity, Sparse, new_key
from .validate import validate_mixing_matrix


def in_neighbors(W: np.ndarray, i: int) -> List[Tuple[int, float]]:
    """Whom node i receives from: (j, W[i, j]) for j != i with W[i, j] > 0, sorted by j."""
    row = np.asarray(W)[i]
    return [(int(j), float(row[j])) for j in np.flatnonzero(row > 0) if j != i]


def out_neighbors(W: np.ndarray, i: int) -> List[Tuple[int, float]]:
    """Whom node i sends to: (j, W[j, i]) for j != i with W[j, i] > 0, sorted by j."""
    col = np.asarray(W)[:, i]
    return [(int(j), float(col[j])) for j in np.flatnonzero(col > 0) if j != i]


def graph_of(W: np.ndarray, directed: bool) -> nx.Graph:
    """The communication graph of W, edges weighted by W.

    Undirected: edge {i, j} with weight W[i, j] when W[i, j] > 0.
    Directed: edge j -> i (j sends to i) with weight W[i, j].
    """
    n = W.shape[0]
    G = nx.DiGraph() if directed else nx.Graph()
    G.add_nodes_from(range(n))
    for i, j in zip(*np.nonzero(W > 0)):
        if i != j:
            G.add_edge(int(j), int(i), weight=float(W[i, j]))
    return G


def _frozen(W: np.ndarray) -> np.ndarray:
    W = np.array(W, dtype=np.float64)
    W.setflags(write=False)
    return W


class Topology:
    """A family's mixing matrices W(t) on n nodes, repeating with `period`.

    x_i <- sum_j W(t)[i, j] x_j is one gossip step at step t. Static families
    have period 1 and return one cached read-only matrix for every t.

    Example:
        >>> from topologies import build
        >>> topo = build("ring", 8)
        >>> float(topo.W(0)[0, 1]), topo.period, topo.time_varying
        (0.3333333333333333, 1, False)
    """

    def __init__(self, name: str, n: int, step_matrix: Callable[[int], np.ndarray], *,
                 period: int = 1, directed: bool = False, weights: str = "default",
                 default_weights: str = "default", options: Optional[Mapping[str, Any]] = None,
                 graph: Optional[nx.Graph] = None, stochastic: str = "doubly",
                 sparse_step: Optional[Callable[[int], Sparse]] = None) -> None:
        """Prefer `Topology.static`; step_matrix(k) gives W for k in [0, period).

        stochastic: "doubly" (gossip matrices) or "column" (push-sum matrices of directed graphs:
        what each node sends sums to 1, what it receives need not).
        sparse_step(k), when given, builds the same W(k) as a `steps.Sparse` in O(n x degree),
        so `step(t)` never materialises n x n; without it, `step(t)` reads W(k)'s nonzeros.
        """
        self.name, self.n, self.period = name, n, period
        self.stochastic = stochastic
        self.directed, self.weights = directed, weights
        self._default_weights = default_weights
        self.options: Dict[str, Any] = dict(options or {})
        self._static_graph = graph
        self._matrix = functools.lru_cache(maxsize=128)(
            lambda k: self._checked(step_matrix(k), k))
        self._graph = functools.lru_cache(maxsize=128)(self._build_graph)
        self._sparse_step = sparse_step
        self._serial = new_key(name, n)[0]
        self._step = functools.lru_cache(maxsize=128)(self._build_step)

    @classmethod
    def static(cls, name: str, W: np.ndarray, graph: nx.Graph, **kwargs: Any) -> "Topology":
        """A period-1 topology of one matrix W on `graph` (checked against it)."""
        W = _frozen(W)
        validate_mixing_matrix(W, graph, name=f"{name} W", kind=kwargs.get("stochastic", "doubly"))
        for i, j in graph.edges:
            graph.edges[i, j]["weight"] = float(W[j, i]) if graph.is_directed() else float(W[i, j])
        return cls(name, W.shape[0], lambda k: W, graph=nx.freeze(graph),
                   directed=graph.is_directed(), **kwargs)

    def _checked(self, W: np.ndarray, k: int) -> np.ndarray:
        if self._static_graph is not None:
            return W  # already validated against its graph in `static`
        W = _frozen(W)
        validate_mixing_matrix(W, name=f"{self.name} W({k})", kind=self.stochastic)
        return W

    def _build_step(self, k: int) -> Sparse:
        key = (self._serial, self.name, k)
        if self._sparse_step is None:
            return Sparse.from_dense(self.W(k), key=key)
        step = self._sparse_step(k)
        if isinstance(step, (Average, Identity)):  # shared, keyed by n alone
            return step
        return step.relabel(key).validate(self.stochastic, name=f"{self.name} W({k})")

    def _build_graph(self, k: int) -> nx.Graph:
        if self._static_graph is not None:
            return self._static_graph
        return nx.freeze(graph_of(self.W(k), self.directed))

    @property
    def time_varying(self) -> bool:
        """True when W changes with t (period > 1)."""
        return self.period > 1

    @property
    def spec(self) -> str:
        """A string `from_spec` turns back into this topology."""
        items = [f"{k}={v}" for k, v in self.options.items() if v is not None]
        if self.weights not in ("default", self._default_weights):
            items.append(f"weights={self.weights}")
        return self.name + (":" + ",".join(items) if items else "")

    def W(self, t: int = 0) -> np.ndarray:
        """Read-only float64 (n, n) mixing matrix used at step t."""
        return self._matrix(int(t) % self.period)

    def step(self, t: int = 0) -> Sparse:
        """W(t) as a `steps.Sparse`: rows and columns per node, and a key naming (topology, t mod period).

        What the mixer plans from; one object per step of the period (cached), so a plan cached by
        its key is found again without looking at the matrix.
        """
        return self._step(int(t) % self.period)

    def graph(self, t: int = 0) -> nx.Graph:
        """Frozen communication graph at step t; a DiGraph edge j -> i means j sends to i."""
        return self._graph(int(t) % self.period)

    def in_neighbors(self, i: int, t: int = 0) -> List[Tuple[int, float]]:
        """(j, W(t)[i, j]) for the nodes i receives from at step t."""
        return in_neighbors(self.W(t), i)

    def out_neighbors(self, i: int, t: int = 0) -> List[Tuple[int, float]]:
        """(j, W(t)[j, i]) for the nodes i sends to at step t."""
        return out_neighbors(self.W(t), i)

    def degrees(self, t: int = 0) -> Tuple[List[int], List[int]]:
        """(in-degrees, out-degrees) of every node at step t, self excluded."""
        P = np.array(self.W(t) > 0)
        np.fill_diagonal(P, False)
        return P.sum(axis=1).tolist(), P.sum(axis=0).tolist()

    def describe(self) -> Dict[str, Any]:
        """Summary for logs and the CLI.

        lambda2 is lambda2(W) for static families and the per-step rate over
        one period for time-varying ones (see spectra.spectral_gap).
        """
        max_in = max_out = 0
        for t in range(self.period):
            d_in, d_out = self.degrees(t)
            max_in, max_out = max(max_in, *d_in), max(max_out, *d_out)
        rate = spectra.mixing_rate(self)
        return {"name": self.name, "spec": self.spec, "n": self.n, "period": self.period,
                "time_varying": self.time_varying, "directed": self.directed, "stochastic": self.stochastic,
                "weights": self.weights, "options": dict(self.options),
                "max_in_degree": int(max_in), "max_out_degree": int(max_out),
                "lambda2": rate, "spectral_gap": max(0.0, 1.0 - rate)}

    def __repr__(self) -> str:
        return f"Topology({self.spec!r}, n={self.n}, period={self.period})"

"""One step's mixing matrix described by what each node needs, not as an n x n array.

A rank that holds a few workers needs only their rows of W (whom they receive from, with which
weights) and their columns (whom they send to). `Sparse` keeps W(t) as compressed rows and
columns, so those are slices whatever n is; `Average` and `Identity` need no entries at all.
Every step has a `key` that names it cheaply (plans are cached by it, instead of hashing a
matrix) and turns into the dense matrix on request (`np.asarray(step)`), for code that wants W
itself: the in-process backend, spectra, tests.
"""
from __future__ import annotations

import functools
import itertools
from typing import Hashable, Optional, Tuple

import numpy as np

from .errors import TopologyError

# A weight is "the same as 1/n" within this absolute tolerance (float64 round-off of 1/n).
AVERAGE_ATOL = 1e-12
_serials = itertools.count()


def new_key(*parts: Hashable) -> tuple:
    """A key no other step has: a process-wide serial number, then `parts` for the reader."""
    return (next(_serials),) + parts


class _Step:
    kind: str
    n: int
    key: Hashable

    @property
    def shape(self) -> Tuple[int, int]:
        return (self.n, self.n)

    def dense(self) -> np.ndarray:
        """The (n, n) float64 matrix, read-only and built once (O(n^2) memory: tests, small n)."""
        if getattr(self, "_dense", None) is None:
            W = self._build_dense()
            W.setflags(write=False)
            self._dense = W
        return self._dense

    def halfway(self) -> "_Step":
        """(I + W) / 2, entry for entry as 0.5 * (np.eye(n) + W) computes it; built once per step."""
        if getattr(self, "_halfway", None) is None:
            self._halfway = self._build_halfway()
        return self._halfway

    def _build_halfway(self) -> "_Step":
        W = 0.5 * (np.eye(self.n) + self.dense())
        return Sparse.from_dense(W, key=_derived(self.key, "halfway"))

    def __array__(self, dtype=None, copy=None):
        W = self.dense()
        return W.astype(dtype) if dtype is not None and dtype != W.dtype else (W.copy() if copy else W)

    def __getitem__(self, index):
        return self.dense()[index]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, key={self.key!r})"


class Average(_Step):
    """W = (1/n) 1 1^T: every worker becomes the exact average (an allreduce)."""

    kind = "average"

    def __init__(self, n: int):
        self.n, self.key = int(n), ("average", int(n))

    def _build_dense(self) -> np.ndarray:
        return np.full((self.n, self.n), 1.0 / self.n)


class Identity(_Step):
    """W = I: nothing moves."""

    kind = "identity"

    def __init__(self, n: int):
        self.n, self.key = int(n), ("identity", int(n))

    def halfway(self) -> "Identity":
        return self

    def _build_dense(self) -> np.ndarray:
        return np.eye(self.n)


@functools.lru_cache(maxsize=64)
def average(n: int) -> Average:
    return Average(n)


@functools.lru_cache(maxsize=64)
def identity(n: int) -> Identity:
    return Identity(n)


class Sparse(_Step):
    """W as compressed rows (CSR): row i's nonzero columns, ascending, with their weights.

    Columns (whom node j sends to) are the transpose, built on first use in O(nnz). `kind` is
    read off the entries as for a dense W: "identity" when W = I, "average" when every entry is
    1/n, "sparse" otherwise.
    """

    def __init__(self, n: int, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                 key: Optional[Hashable] = None, dense: Optional[np.ndarray] = None):
        self.n = int(n)
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.data = np.asarray(data, dtype=np.float64)
        self.key = new_key("sparse") if key is None else key
        self._dense = dense
        self._cols = None
        self.kind = self._classify()

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_dense(cls, W: np.ndarray, key: Optional[Hashable] = None) -> "Sparse":
        """The nonzeros of W (which is kept: asking for the dense matrix costs nothing more)."""
        W = np.asarray(W, dtype=np.float64)
        rows, cols = np.nonzero(W)
        indptr = np.zeros(W.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=W.shape[0]), out=indptr[1:])
        return cls(W.shape[0], indptr, cols, W[rows, cols], key=key, dense=W)

    @classmethod
    def from_entries(cls, n: int, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray,
                     key: Optional[Hashable] = None) -> "Sparse":
        """W[rows[e], cols[e]] += weights[e]; repeated (row, col) pairs add, zeros are dropped."""
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float64)
        flat = rows * n + cols
        order = np.argsort(flat, kind="stable")
        flat, weights = flat[order], weights[order]
        unique, first = np.unique(flat, return_index=True)
        summed = np.add.reduceat(weights, first) if len(flat) else weights
        keep = summed != 0
        unique, summed = unique[keep], summed[keep]
        r, c = unique // n, unique % n
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
        return cls(n, indptr, c, summed, key=key)

    def _build_dense(self) -> np.ndarray:
        W = np.zeros((self.n, self.n))
        rows = np.repeat(np.arange(self.n), np.diff(self.indptr))
        W[rows, self.indices] = self.data
        return W

    # -- what one node needs ------------------------------------------------------------------
    def row(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """(columns j, weights W[i, j]) of row i's nonzeros, j ascending (i itself included)."""
        lo, hi = self.indptr[i], self.indptr[i + 1]
        return self.indices[lo:hi], self.data[lo:hi]

    def col(self, j: int) -> Tuple[np.ndarray, np.ndarray]:
        """(rows i, weights W[i, j]) of column j's nonzeros, i ascending (j itself included)."""
        indptr, indices, data = self._columns()
        lo, hi = indptr[j], indptr[j + 1]
        return indices[lo:hi], data[lo:hi]

    def diagonal(self, i: int) -> float:
        cols, weights = self.row(i)
        at = np.searchsorted(cols, i)
        return float(weights[at]) if at < len(cols) and cols[at] == i else 0.0

    def _columns(self):
        if self._cols is None:
            rows = np.repeat(np.arange(self.n), np.diff(self.indptr))
            order = np.lexsort((rows, self.indices))  # by column, then row
            indptr = np.zeros(self.n + 1, dtype=np.int64)
            np.cumsum(np.bincount(self.indices, minlength=self.n), out=indptr[1:])
            self._cols = (indptr, rows[order], self.data[order])
        return self._cols

    def relabel(self, key: Hashable) -> "Sparse":
        self.key = key
        return self

    @property
    def nnz(self) -> int:
        return int(len(self.data))

    # -- checks and transforms ----------------------------------------------------------------
    def _classify(self) -> str:
        n = self.n
        if (self.nnz == n and np.array_equal(self.indptr, np.arange(n + 1))
                and np.array_equal(self.indices, np.arange(n)) and np.all(self.data == 1.0)):
            return "identity"
        if self.nnz == n * n and np.all(np.abs(self.data - 1.0 / n) <= AVERAGE_ATOL):
            return "average"
        return "sparse"

    def validate(self, stochastic: str = "doubly", tol: float = 1e-9, name: str = "W") -> "Sparse":
        """TopologyError unless finite, non-negative and doubly (or column) stochastic: O(nnz)."""
        if not np.all(np.isfinite(self.data)):
            raise TopologyError(f"{name} has non-finite entries")
        if np.any(self.data < 0):
            raise TopologyError(f"{name} has negative entries")
        rows = np.repeat(np.arange(self.n), np.diff(self.indptr))
        sums = [("column", np.bincount(self.indices, weights=self.data, minlength=self.n))]
        if stochastic == "doubly":
            sums.insert(0, ("row", np.bincount(rows, weights=self.data, minlength=self.n)))
        for what, s in sums:
            off = np.flatnonzero(np.abs(s - 1.0) > tol)
            if len(off):
                raise TopologyError(f"{name} {what} {off[0]} sums to {s[off[0]]:.12g}, not 1 (tolerance {tol:g})")
        return self

    def _build_halfway(self) -> "Sparse":
        diag_rows = np.arange(self.n)
        rows = np.repeat(diag_rows, np.diff(self.indptr))
        on_diag = rows == self.indices
        data = np.where(on_diag, 0.5 * (1.0 + self.data), 0.5 * (0.0 + self.data))
        missing = np.setdiff1d(diag_rows, rows[on_diag], assume_unique=True)
        all_rows = np.concatenate([rows, missing])
        all_cols = np.concatenate([self.indices, missing])
        all_data = np.concatenate([data, np.full(len(missing), 0.5 * (1.0 + 0.0))])
        return Sparse.from_entries(self.n, all_rows, all_cols, all_data, key=_derived(self.key, "halfway"))


def _derived(key: Hashable, what: str) -> tuple:
    return key + (what,) if isinstance(key, tuple) else (key, what)


def is_step(W) -> bool:
    """True for a step object of this module (anything else is taken as a dense matrix)."""
    return isinstance(W, _Step)


def half_half_sparse(peer: np.ndarray, key: Optional[Hashable] = None) -> Sparse:
    """(I + P) / 2 where P[i, peer[i]] = 1, in O(n): the sparse twin of dynamic.half_half."""
    n = len(peer)
    i = np.arange(n)
    rows = np.concatenate([i, i])
    cols = np.concatenate([i, np.asarray(peer, dtype=np.int64)])
    weights = np.concatenate([np.full(n, 0.5), np.full(n, 0.5)])
    return Sparse.from_entries(n, rows, cols, weights, key=key)


def push_sparse(out_peers, key: Optional[Hashable] = None) -> Sparse:
    """The sparse twin of pushing.push_matrix: node i keeps and pushes 1/(out-degree + 1) each."""
    n = len(out_peers)
    rows, cols, weights = [], [], []
    for i, peers in enumerate(out_peers):
        share = 1.0 / (len(peers) + 1)
        rows.append(i)
        cols.append(i)
        weights.append(share)
        for j in peers:
            rows.append(int(j))
            cols.append(i)
            weights.append(share)
    return Sparse.from_entries(n, np.array(rows), np.array(cols), np.array(weights), key=key)


class Hierarchical(_Step):
    """Exact average inside each group of `group` consecutive workers, then `outer` (a step over the
    groups) between them: W = kron(W_outer, J_group / group), i.e.

        x_i <- sum_b W_outer[a, b] * mean of group b's workers,     a = i // group.

    With outer = identity it is the average inside groups only. A launcher that puts whole groups on
    one node runs it as an allreduce inside the node plus one exchange between nodes.
    """

    kind = "hierarchical"

    def __init__(self, group: int, outer: _Step, key: Optional[Hashable] = None):
        self.group, self.outer = int(group), outer
        self.n = self.group * outer.n
        self.key = new_key("hierarchical") if key is None else key
        self._sparse = None

    def _build_dense(self) -> np.ndarray:
        return np.kron(np.asarray(self.outer.dense()), np.full((self.group, self.group), 1.0 / self.group))

    def as_sparse(self) -> Sparse:
        """The same W as compressed rows (n x group x outer degree entries), for layouts that split groups."""
        if self._sparse is None:
            G = self.group
            if self.outer.kind == "identity":
                outer = Sparse.from_entries(self.outer.n, np.arange(self.outer.n), np.arange(self.outer.n),
                                            np.ones(self.outer.n))
            elif self.outer.kind == "average":
                outer = Sparse.from_dense(self.outer.dense())
            else:
                outer = self.outer
            a_rows = np.repeat(np.arange(outer.n), np.diff(outer.indptr))
            # entry (a, b, w) of W_outer becomes w / G at (a*G + u, b*G + v) for all u, v < G
            u, v = np.meshgrid(np.arange(G), np.arange(G), indexing="ij")
            rows = (a_rows[:, None] * G + u.ravel()[None, :]).ravel()
            cols = (outer.indices[:, None] * G + v.ravel()[None, :]).ravel()
            weights = np.repeat(outer.data * (1.0 / G), G * G)
            self._sparse = Sparse.from_entries(self.n, rows, cols, weights, key=_derived(self.key, "sparse"))
        return self._sparse

    def row(self, i: int):
        return self.as_sparse().row(i)

    def col(self, j: int):
        return self.as_sparse().col(j)

    def diagonal(self, i: int) -> float:
        return self.as_sparse().diagonal(i)

    def relabel(self, key: Hashable) -> "Hierarchical":
        self.key = key
        return self

    def validate(self, stochastic: str = "doubly", tol: float = 1e-9, name: str = "W") -> "Hierarchical":
        if self.outer.kind == "sparse":
            self.outer.validate(stochastic, tol, name=f"{name} (between groups)")
        return self

    def _build_halfway(self) -> Sparse:
        return self.as_sparse().halfway()

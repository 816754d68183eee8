"""Read a mixing step off W itself: identity, exact average, or sparse neighbour exchange.

Pure numpy. Workers are laid out in blocks: rank r holds global workers
r*K .. r*K+K-1 in its local slots 0..K-1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Kind = Literal["identity", "average", "sparse"]

# A weight is "the same as 1/n" within this absolute tolerance (float64 round-off of 1/n).
AVERAGE_ATOL = 1e-12


@dataclass(frozen=True)
class MixPlan:
    """What one rank does for one mixing step.

    For kind == "sparse":
      send_to:   (peer rank, local slots whose rows that peer needs), peers ascending
      recv_from: (peer rank, global workers whose rows arrive from it), peers ascending
      rows:      per local slot, (source, weight) pairs: the slot's own weight first, then the
                 other sources in ascending global worker order. A source < K is a local slot;
                 K + r is row r of the concatenated receive buffer.
    """

    kind: Kind
    n_workers: int
    workers_per_rank: int
    send_to: tuple[tuple[int, tuple[int, ...]], ...] = ()
    recv_from: tuple[tuple[int, tuple[int, ...]], ...] = ()
    rows: tuple[tuple[tuple[int, float], ...], ...] = ()

    @property
    def rows_sent(self) -> int:
        return sum(len(slots) for _, slots in self.send_to)

    @property
    def rows_received(self) -> int:
        return sum(len(workers) for _, workers in self.recv_from)


def classify(W: np.ndarray) -> Kind:
    """identity, all-1/n (one allreduce) or anything else (neighbour exchange)."""
    n = W.shape[0]
    if np.array_equal(W, np.eye(n)):
        return "identity"
    if np.all(np.abs(W - 1.0 / n) <= AVERAGE_ATOL):
        return "average"
    return "sparse"


def check_matrix(W: np.ndarray, n_workers: int) -> np.ndarray:
    W = np.asarray(W, dtype=np.float64)
    if W.shape != (n_workers, n_workers):
        raise ValueError(f"mixing matrix has shape {W.shape}, expected ({n_workers}, {n_workers}) "
                         f"for {n_workers} workers")
    if not np.all(np.isfinite(W)):
        raise ValueError("mixing matrix has non-finite entries")
    return W


def make_plan(W: np.ndarray, rank: int, size: int, workers_per_rank: int) -> MixPlan:
    """The plan of `rank` for mixing step W over size * workers_per_rank workers."""
    K = workers_per_rank
    n = size * K
    W = check_matrix(W, n)
    kind = classify(W)
    if kind != "sparse":
        return MixPlan(kind, n, K)
    mine = range(rank * K, rank * K + K)
    send_to = []
    recv_from = []
    for peer in range(size):
        if peer == rank:
            continue
        theirs = range(peer * K, peer * K + K)
        # peer needs my row j when some worker i of peer has W[i, j] != 0
        slots = tuple(j - rank * K for j in mine if np.any(W[list(theirs), j] != 0))
        if slots:
            send_to.append((peer, slots))
        needed = tuple(j for j in theirs if np.any(W[list(mine), j] != 0))
        if needed:
            recv_from.append((peer, needed))
    source_of = {rank * K + s: s for s in range(K)}
    received = [j for _, workers in recv_from for j in workers]
    source_of.update({j: K + r for r, j in enumerate(received)})
    rows = []
    for s, i in enumerate(mine):
        terms = [(s, float(W[i, i]))]
        for j in np.flatnonzero(W[i]):
            if j != i:
                terms.append((source_of[int(j)], float(W[i, j])))
        rows.append(tuple(terms))
    return MixPlan("sparse", n, K, tuple(send_to), tuple(recv_from), tuple(rows))

"""Read a mixing step off W itself: identity, exact average, or sparse neighbour exchange.

Pure numpy. Workers are laid out in blocks: rank r holds global workers
r*K .. r*K+K-1 in its local slots 0..K-1.

W is either a dense (n, n) matrix (user matrices, tests) or a step of `topologies.steps`
(what schedules hand out): from a step, a rank's plan reads only its own workers' rows and
columns, O(K x degree) whatever n is; from a dense matrix it reads the whole matrix.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from topologies.steps import is_step

Kind = Literal["identity", "average", "sparse", "hierarchical"]

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
    out_degree: tuple[int, ...] = ()   # per local slot: how many other workers read its row
    group_ranks: int = 0               # hierarchical: consecutive ranks per group (whole groups per node)

    @property
    def rows_sent(self) -> int:
        return sum(len(slots) for _, slots in self.send_to)

    @property
    def rows_received(self) -> int:
        return sum(len(workers) for _, workers in self.recv_from)


def classify(W) -> Kind:
    """identity, all-1/n (one allreduce) or anything else (neighbour exchange)."""
    if is_step(W):
        return W.kind
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


def make_plan(W, rank: int, size: int, workers_per_rank: int, exchange_only: bool = False) -> MixPlan:
    """The plan of `rank` for mixing step W over size * workers_per_rank workers.

    A hierarchical step whose groups are whole ranks (group a multiple of workers_per_rank) gets a
    "hierarchical" plan: an allreduce among the group's ranks, then the between-group step among
    the ranks of the same place in each group. Otherwise, or with exchange_only, it is planned as
    the neighbour exchange of its full W.
    """
    if is_step(W) and W.kind == "hierarchical":
        K = workers_per_rank
        if W.n != size * K:
            raise ValueError(f"mixing matrix has shape {W.shape}, expected ({size * K}, {size * K}) "
                             f"for {size * K} workers")
        if not exchange_only and W.group % K == 0:
            return MixPlan("hierarchical", W.n, K, group_ranks=W.group // K)
        return plan_from_step(W.as_sparse(), rank, size, K)
    if is_step(W):
        return plan_from_step(W, rank, size, workers_per_rank)
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
    cols = W[:, rank * K:rank * K + K] != 0
    out_degree = cols.sum(axis=0) - np.diag(W)[rank * K:rank * K + K].astype(bool)
    return MixPlan("sparse", n, K, tuple(send_to), tuple(recv_from), tuple(rows),
                   tuple(int(d) for d in out_degree))


def plan_from_step(step, rank: int, size: int, workers_per_rank: int) -> MixPlan:
    """make_plan for a `topologies.steps` step: the same plan, read from this rank's K rows and
    K columns only (entries in the same ascending order, weights the same floats)."""
    K = workers_per_rank
    n = size * K
    if step.n != n:
        raise ValueError(f"mixing matrix has shape {step.shape}, expected ({n}, {n}) for {n} workers")
    if step.kind != "sparse":
        return MixPlan(step.kind, n, K)
    first = rank * K
    mine = range(first, first + K)
    needed: dict[int, set] = {}   # peer rank -> global workers whose rows I read
    wanted: dict[int, set] = {}   # peer rank -> my slots whose rows it reads
    out_degree = []
    row_entries = []
    for i in mine:
        cols, weights = step.row(i)
        row_entries.append((cols, weights))
        for j in cols.tolist():
            if not first <= j < first + K:
                needed.setdefault(j // K, set()).add(j)
        readers = step.col(i)[0].tolist()
        out_degree.append(sum(1 for r in readers if r != i))
        for r in readers:
            if not first <= r < first + K:
                wanted.setdefault(r // K, set()).add(i - first)
    recv_from = tuple((peer, tuple(sorted(needed[peer]))) for peer in sorted(needed))
    send_to = tuple((peer, tuple(sorted(wanted[peer]))) for peer in sorted(wanted))
    source_of = {first + s: s for s in range(K)}
    received = [j for _, workers in recv_from for j in workers]
    source_of.update({j: K + r for r, j in enumerate(received)})
    rows = []
    for s, (i, (cols, weights)) in enumerate(zip(mine, row_entries)):
        terms = [(s, step.diagonal(i))]
        for j, w in zip(cols.tolist(), weights.tolist()):
            if j != i:
                terms.append((source_of[j], w))
        rows.append(tuple(terms))
    return MixPlan("sparse", n, K, send_to, recv_from, tuple(rows), tuple(out_degree))

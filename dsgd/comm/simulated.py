"""In-process simulation: all n workers in one process, mixing as a dense matrix product.

This is the reference the distributed backends are tested against: it computes W @ X in
float64 directly, sharing no code with the neighbour-exchange path.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .base import CommStats, Done, Timer, mean_stats
from .plan import check_matrix, classify


class SimulatedMixer:
    """Mixer for n workers held by this process; buffers are (n, m). Example::

        mixer = SimulatedMixer(8)
        mixer.mix_([X], topologies.build("ring", 8).W(0))   # X <- W @ X
    """

    def __init__(self, n_workers: int):
        self.n_workers = self.K = n_workers
        self.comm = SelfCommunicator()
        self.stats = self.comm.stats
        self.worker_bytes_sent = np.zeros(n_workers, dtype=np.float64)

    def state_dict(self) -> dict:
        return {"worker_bytes_sent": torch.from_numpy(self.worker_bytes_sent.copy()), "comm_stats": self.stats.as_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.worker_bytes_sent[:] = state["worker_bytes_sent"].numpy()
        self.stats.load(state["comm_stats"])

    def regroup_state(self, g) -> dict:
        """Bytes per worker follow the workers (new ones start at 0); this rank's traffic counters
        start from the old ranks' mean, so the reported per-rank means continue."""
        return {"worker_bytes_sent": g.rows(lambda s: s["worker_bytes_sent"],
                                            lambda: torch.zeros((), dtype=torch.float64)),
                "comm_stats": mean_stats([s["comm_stats"] for s in g.old])}

    def start(self, buffers: Sequence[torch.Tensor], W: np.ndarray, blocking: bool = False):
        self.mix_(buffers, W)
        return Done()

    def mix_in_worker_order_(self, buffers, W) -> None:
        """The same dense W @ X (one process sums every worker in one place)."""
        self.mix_(buffers, W)

    def start_in_worker_order(self, buffers, W):
        return self.start(buffers, W)

    def mix_(self, buffers: Sequence[torch.Tensor], W: np.ndarray) -> None:
        W = check_matrix(W, self.n_workers)
        kind = classify(W)
        self.stats.count_step(kind)
        row_bytes = sum(b[0].numel() * b.element_size() for b in buffers)
        if kind == "average":
            self.worker_bytes_sent += row_bytes
        elif kind == "sparse":
            off_diag = (W != 0) & ~np.eye(self.n_workers, dtype=bool)
            self.worker_bytes_sent += off_diag.sum(axis=0) * row_bytes
        if kind == "identity":
            return
        with Timer(self.stats):
            for b in buffers:
                Wt = torch.tensor(W, dtype=torch.float64, device=b.device)  # a copy: W may be read-only
                b.copy_(Wt @ b.to(torch.float64))

    def average(self, buffers: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [b.to(torch.float64).mean(0).to(b.dtype) for b in buffers]

    def compressed(self, buffers, W, codec, seed: int, step: int):
        """(decode(encode(X)), W @ decode(encode(X))) for all n workers, in float64 like mix_."""
        from dsgd.compress import Key
        W = check_matrix(W, self.n_workers)
        kind = classify(W)
        self.stats.count_step(kind)
        decoded, mixed = [], []
        for part, b in enumerate(buffers):
            payloads = [codec.encode(b[i], Key(seed, step, i, part)) for i in range(self.n_workers)]
            row_bytes = payloads[0].numel()
            if kind == "average":
                self.worker_bytes_sent += row_bytes
            elif kind == "sparse":
                off_diag = (W != 0) & ~np.eye(self.n_workers, dtype=bool)
                self.worker_bytes_sent += off_diag.sum(axis=0) * row_bytes
            d = torch.stack([codec.decode(p, b.shape[1], Key(seed, step, i, part), b.dtype)
                             for i, p in enumerate(payloads)])
            decoded.append(d)
            Wt = torch.tensor(W, dtype=torch.float64, device=b.device)
            mixed.append((Wt @ d.to(torch.float64)).to(b.dtype))
        return decoded, mixed

    def compressed_many(self, buffers, Ws, codec, seed: int, step: int):
        union = np.mean([np.asarray(W, dtype=np.float64) for W in Ws], axis=0)
        decoded, _ = self.compressed(buffers, union, codec, seed, step)
        mixed = [[(torch.tensor(W, dtype=torch.float64, device=d.device) @ d.to(torch.float64)).to(d.dtype)
                  for d in decoded] for W in Ws]
        return decoded, mixed


class SelfCommunicator:
    """A world of one rank: lets the MPI-free path (Mixer with K workers) run without MPI."""

    rank, size = 0, 1

    def __init__(self):
        self.stats = CommStats()

    def allreduce_sum_(self, buf):
        return None

    def iallreduce_sum(self, buf, blocking: bool = False):
        return Done()

    def iexchange(self, sends, recvs, tag: int = 0):
        if sends or recvs:
            raise RuntimeError("a one-rank world has no peers to exchange with")
        return Done()

    def allreduce_floats(self, values):
        return [float(v) for v in values]

    def allreduce_max(self, value):
        return value

    def allgather_object(self, obj):
        return [obj]

    def allgather_rows(self, rows):
        return rows

    def split(self, color: int, key: int) -> "SelfCommunicator":
        return self

    def barrier(self) -> None:
        return None

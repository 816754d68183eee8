"""PowerSGD gradient averaging for C-SGD (Vogels, Karimireddy, Jaggi, NeurIPS 2019).

Each gradient matrix M (a weight reshaped to rows x cols) plus its error memory e is sent as two
thin factors: P = M Q is averaged over all workers and orthonormalized, Q' = M^T P is averaged,
and every worker steps on the same P Q'^T; e keeps what the rank-r approximation missed. Q is
warm-started from the previous step's average (the same on every worker). Vectors (biases,
normalization weights) and matrices too small to gain are averaged dense in the first exchange.
"""
from __future__ import annotations

import torch

from .base import Rule


class PowerSGDAveraging(Rule):
    buffer_names = ("e", "q")
    shared_names = ("q",)   # the warm start is the same on every worker

    def __init__(self, schedule, rank: int, seed: int):
        self.schedule, self.rank, self.seed = schedule, rank, seed

    def attach(self, engine):
        layout = engine.workers.layout
        self.e = engine.new_buffers()
        self.matrices, self.dense = [], []  # (bucket, offset, rows, cols) / (bucket, offset, numel)
        for slot in layout.slots:
            rows = slot.shape[0] if len(slot.shape) else 1
            cols = slot.numel // max(rows, 1)
            if len(slot.shape) >= 2 and self.rank * (rows + cols) < rows * cols:
                self.matrices.append((slot.bucket, slot.offset, rows, cols))
            else:
                self.dense.append((slot.bucket, slot.offset, slot.numel))
        g = torch.Generator().manual_seed(self.seed)
        device, dtype = engine.params[0].device, engine.params[0].dtype
        self.q = [torch.randn(cols, self.rank, generator=g).to(device=device, dtype=dtype)
                  for _, _, _, cols in self.matrices]

    def _views(self, buffers, k):
        return [buffers[b][k, o:o + r * c].view(r, c) for b, o, r, c in self.matrices]

    def step(self, t, engine):
        W = self.action(t).grad_W
        if W is None:  # the schedule does not average at this step
            engine.optimizer_step()
            return None
        K, grads = engine.K, engine.grads
        for e, g in zip(self.e, grads):
            e.add_(g)  # M = g + e: compressed below; e keeps the remainder
        M = [self._views(self.e, k) for k in range(K)]
        dense_numel = sum(n for _, _, n in self.dense)
        p_numel = sum(r * self.rank for _, _, r, _ in self.matrices)
        first = torch.empty(K, dense_numel + p_numel, dtype=grads[0].dtype, device=grads[0].device)
        for k in range(K):
            parts = [grads[b][k, o:o + n] for b, o, n in self.dense]
            parts += [(m @ q).reshape(-1) for m, q in zip(M[k], self.q)]
            first[k] = torch.cat(parts) if parts else first[k]
        engine.mix(W, [first])  # the average of P over all workers, and of the dense gradients
        P, lo = [], dense_numel
        for _, _, r, _ in self.matrices:
            P.append(torch.linalg.qr(first[0, lo:lo + r * self.rank].view(r, self.rank)).Q)
            lo += r * self.rank
        q_numel = sum(c * self.rank for _, _, _, c in self.matrices)
        second = torch.empty(K, q_numel, dtype=grads[0].dtype, device=grads[0].device)
        for k in range(K):
            if self.matrices:
                second[k] = torch.cat([(m.T @ p).reshape(-1) for m, p in zip(M[k], P)])
        if self.matrices:
            engine.mix(W, [second])
        lo = 0
        for i, (_, _, _, c) in enumerate(self.matrices):
            self.q[i] = second[0, lo:lo + c * self.rank].view(c, self.rank).clone()
            lo += c * self.rank
        for k in range(K):
            for (b, o, n), avg in zip(self.dense, torch.split(first[k, :dense_numel], [n for _, _, n in self.dense])):
                grads[b][k, o:o + n] = avg
                self.e[b][k, o:o + n] = 0  # averaged exactly: nothing left over
            for (b, o, r, c), m, p, q in zip(self.matrices, M[k], P, self.q):
                approx = p @ q.T
                grads[b][k, o:o + r * c] = approx.reshape(-1)
                m.sub_(approx)
        engine.optimizer_step()
        return None

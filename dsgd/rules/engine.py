"""The engine a rule works through: the workers' buffers, their optimizers, and the mixer.

It also owns the exchange a rule leaves in flight (D-SGD with overlap): `finish()` completes it, and
whoever reads or writes the parameters next (the next step, an evaluation, a checkpoint) calls it,
so nobody carries a pending exchange by hand.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch


def mix_model_(mixer, workers, W, mix_buffers: bool, mix_state: bool, start_only: bool = False, extra=()):
    """Mix the workers' parameters with W, plus BatchNorm buffers / optimizer state when asked.

    Everything travels in one exchange. With `start_only` the parameters (and `extra`) stay in flight
    and are returned unfinished (overlap), while the statistics and state are mixed at once: the next
    forward pass updates BatchNorm statistics in place, so they must not be read by a send meanwhile.

    Args:
        workers: has `params` ((K, m) buckets) and pack/unpack pairs for buffers and state.
        extra: a rule's own buffers mixed with the same W, in the same exchange as the parameters.
    """
    carried = []   # (packed buffers, unpack) of what travels beside the parameters
    for pack, unpack, wanted in ((workers.packed_buffers, workers.unpack_buffers, mix_buffers),
                                 (workers.packed_state, workers.unpack_state, mix_state)):
        bufs = pack() if wanted else None
        if bufs is not None:
            carried.append((bufs, unpack))
    if start_only:
        pending = mixer.start([*workers.params, *extra], W, blocking=False)
        for bufs, unpack in carried:
            mixer.mix_(bufs, W)
            unpack(bufs)
        return pending
    mixer.start([*workers.params, *extra, *(b for bufs, _ in carried for b in bufs)], W, blocking=True).wait()
    for bufs, unpack in carried:
        unpack(bufs)
    return None


class WorkerEngine:
    """Binds a rule to K workers and a mixer (the concrete `dsgd.rules.Engine`).

    Args:
        mixer: Mixer (or SimulatedMixer) over all workers.
        workers: WorkerSet-like: params, grads, layout, optimizer_step(), pack/unpack pairs.
        lr: step -> learning rate.
        mix_buffers, mix_state: what a parameter mix also carries (BatchNorm statistics, optimizer state).
        weight_decay: per parameter tensor of the layout, the decay its gradient gets in
            decayed_gradients() (rules that do their own update; the torch optimizers decay on their own).
    """

    def __init__(self, mixer, workers, lr: Callable[[int], float], mix_buffers: bool = True,
                 mix_state: bool = False, weight_decay: Sequence[float] = ()):
        self.mixer, self.workers, self._lr = mixer, workers, lr
        self.mix_buffers, self.mix_state = mix_buffers, mix_state
        self.K = workers.K
        self._decay = self._decay_rows(weight_decay)
        self.in_flight = None   # an exchange a rule started and left unfinished
        self.background = []    # exchanges a rule owns across several steps (streaming), finished by finish_all

    @property
    def params(self):
        return self.workers.params

    @property
    def grads(self):
        return self.workers.grads

    def lr(self, t: int) -> float:
        return self._lr(t)

    def views(self, buffers, k: int) -> list[torch.Tensor]:
        """Worker k's rows of (K, m) buffers laid out like the parameters, as tensors shaped like them."""
        layout = self.workers.layout
        return [layout.view(buffers, k, i) for i in range(len(layout))]

    def slots(self) -> list:
        """Where each parameter tensor lives in the buckets: (bucket, offset, numel), in model order."""
        return [(s.bucket, s.offset, s.numel) for s in self.workers.layout.slots]

    def new_buffers(self):
        return self.workers.layout.allocate(self.K)

    def new_scalars(self, value: float):
        device = self.workers.params[0].device
        return [torch.full((self.K, 1), float(value), dtype=torch.float64, device=device)]

    def _decay_rows(self, weight_decay):
        """Per bucket, None (no decay) or a (1, m) row of each entry's decay factor."""
        layout = self.workers.layout
        if not any(weight_decay):
            return [None] * len(self.workers.params)
        rows = [torch.zeros(1, b.shape[1], dtype=b.dtype, device=b.device) for b in self.workers.params]
        for slot, wd in zip(layout.slots, weight_decay):
            rows[slot.bucket][0, slot.offset:slot.offset + slot.numel] = wd
        return rows

    def decayed_gradients(self):
        out = []
        for g, x, decay in zip(self.grads, self.params, self._decay):
            out.append(g.clone() if decay is None else g + x * decay)
        return out

    def optimizer_step(self) -> None:
        self.workers.optimizer_step()

    # -- the network ---------------------------------------------------------------------------
    def adopt(self, pending) -> None:
        """Own an exchange left in flight (what a rule's step may return)."""
        if pending is not None and pending is not self.in_flight:
            self.finish()
            self.in_flight = pending

    def finish(self) -> None:
        """Complete the exchange in flight, if any: its results are then in place."""
        if self.in_flight is not None:
            pending, self.in_flight = self.in_flight, None
            pending.wait()

    def finish_all(self) -> None:
        """finish(), and every exchange a rule keeps in the background: before a checkpoint, an
        evaluation or the end (waiting earlier changes no value, only the overlap)."""
        self.finish()
        pending, self.background = self.background, []
        for p in pending:   # in the order they started
            p.wait()

    def start(self, W: np.ndarray, buffers, in_worker_order: bool = False):
        """Start mixing `buffers` and return the unfinished step: the rule waits on it when it needs
        the result, possibly steps later; until then the buffers must not change. in_worker_order: an
        average summed in worker order (see mix), whose step moves on when its progress() is called."""
        pending = (self.mixer.start_in_worker_order(list(buffers), W) if in_worker_order
                   else self.mixer.start(list(buffers), W, blocking=False))
        self.background = [p for p in self.background if not getattr(p, "done", False)] + [pending]
        return pending

    def mix(self, W: np.ndarray, buffers, start_only: bool = False, in_worker_order: bool = False):
        """x_i <- sum_j W[i, j] x_j for every buffer; in_worker_order: an average sums the workers in
        worker order whatever the layout (a chain instead of an allreduce, for rules that average
        rarely), so the result is the same bit for bit in every split of the workers over ranks."""
        if in_worker_order:
            self.mixer.mix_in_worker_order_(list(buffers), W)
            return None
        pending = self.mixer.start(list(buffers), W, blocking=not start_only)
        if start_only:
            self.adopt(pending)
            return pending
        pending.wait()
        return None

    def compressed(self, W: np.ndarray, buffers, codec, seed: int, step: int):
        """(decoded, mixed): decode(encode(b)) of this rank's rows and W @ decode(encode(B)), payloads only on the wire."""
        return self.mixer.compressed(list(buffers), W, codec, seed, step)

    def compressed_many(self, Ws, buffers, codec, seed: int, step: int):
        """(decoded, [W @ decode(encode(B)) for each W]): one exchange over the union of the graphs."""
        return self.mixer.compressed_many(list(buffers), list(Ws), codec, seed, step)

    def mix_statistics(self, W: np.ndarray) -> None:
        """Mix BatchNorm running statistics alone (dense: they are small)."""
        bufs = self.workers.packed_buffers()
        if bufs is not None:
            self.mixer.mix_(bufs, W)
            self.workers.unpack_buffers(bufs)

    def mix_model(self, W: np.ndarray, extra=(), start_only: bool = False):
        pending = mix_model_(self.mixer, self.workers, W, self.mix_buffers, self.mix_state, start_only, extra)
        self.adopt(pending)
        return pending

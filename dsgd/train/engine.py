"""The engine a rule works through: the workers' buffers, their optimizers, and the mixer."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from dsgd.train.mixing import mix_model_


class Engine:
    """Binds a rule to K workers and a mixer.

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

    @property
    def params(self):
        return self.workers.params

    @property
    def grads(self):
        return self.workers.grads

    def lr(self, t: int) -> float:
        return self._lr(t)

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

    def mix(self, W: np.ndarray, buffers, start_only: bool = False):
        pending = self.mixer.start(list(buffers), W, blocking=not start_only)
        if start_only:
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
        return mix_model_(self.mixer, self.workers, W, self.mix_buffers, self.mix_state, start_only, extra)

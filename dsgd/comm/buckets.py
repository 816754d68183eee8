"""Pack the tensors of K replicas into a few flat (K, m) buffers so a mixing step sends few, large messages.

Row k of a buffer holds replica k's tensors back to back. Parameters are *bound* to their
buffer (their storage becomes a view of it), so mixing the buffer in place updates the model
and the Parameter objects the optimizer holds stay the same. Other tensors (BatchNorm
buffers, optimizer state) are packed and unpacked by copy when a step mixes them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .memory import host_zeros

DEFAULT_CAP_BYTES = 0  # 0: one bucket per (dtype, device); messages are large anyway


@dataclass(frozen=True)
class Slot:
    bucket: int
    offset: int
    numel: int
    shape: torch.Size


class BucketLayout:
    """Where each tensor of one replica lives in the buckets. Shared by all replicas."""

    def __init__(self, tensors: Sequence[torch.Tensor], cap_bytes: int = DEFAULT_CAP_BYTES):
        self.slots: list[Slot] = []
        self.bucket_keys: list[tuple[torch.dtype, torch.device]] = []
        self.bucket_numel: list[int] = []
        open_bucket: dict[tuple[torch.dtype, torch.device], int] = {}
        for t in tensors:
            key = (t.dtype, t.device)
            b = open_bucket.get(key)
            full = b is not None and cap_bytes > 0 and \
                (self.bucket_numel[b] + t.numel()) * t.element_size() > cap_bytes
            if b is None or full:
                b = open_bucket[key] = len(self.bucket_keys)
                self.bucket_keys.append(key)
                self.bucket_numel.append(0)
            self.slots.append(Slot(b, self.bucket_numel[b], t.numel(), t.shape))
            self.bucket_numel[b] += t.numel()

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def numel(self) -> int:
        return sum(self.bucket_numel)

    def nbytes(self) -> int:
        return sum(n * torch.empty((), dtype=dt).element_size()
                   for n, (dt, _) in zip(self.bucket_numel, self.bucket_keys))

    def allocate(self, replicas: int) -> list[torch.Tensor]:
        """Zeroed (replicas, m) buffers, one per bucket (large host ones on huge pages: dsgd.comm.memory)."""
        return [host_zeros(replicas, n, dtype=dt, device=dev)
                for n, (dt, dev) in zip(self.bucket_numel, self.bucket_keys)]

    def view(self, buffers: Sequence[torch.Tensor], k: int, index: int) -> torch.Tensor:
        s = self.slots[index]
        return buffers[s.bucket][k, s.offset:s.offset + s.numel].view(s.shape)

    def stacked(self, buffers: Sequence[torch.Tensor], index: int) -> torch.Tensor:
        """All replicas of tensor `index` as one (K, *shape) view (for vectorized training)."""
        s = self.slots[index]
        return buffers[s.bucket][:, s.offset:s.offset + s.numel].view(-1, *s.shape)

    def pack_(self, buffers: Sequence[torch.Tensor], k: int, tensors: Sequence[torch.Tensor]) -> None:
        """Copy replica k's tensors into row k of the buffers."""
        for i, t in enumerate(tensors):
            self.view(buffers, k, i).copy_(t)

    def unpack_(self, buffers: Sequence[torch.Tensor], k: int, tensors: Sequence[torch.Tensor]) -> None:
        """Copy row k of the buffers back into replica k's tensors."""
        for i, t in enumerate(tensors):
            t.copy_(self.view(buffers, k, i))


def bind_(layout: BucketLayout, buffers: Sequence[torch.Tensor], k: int,
          params: Sequence[torch.Tensor]) -> None:
    """Make replica k's parameters views of row k (values copied in first)."""
    with torch.no_grad():
        for i, p in enumerate(params):
            v = layout.view(buffers, k, i)
            v.copy_(p)
            p.data = v


def bind_grads_(layout: BucketLayout, buffers: Sequence[torch.Tensor], k: int,
                params: Sequence[torch.Tensor]) -> None:
    """Point replica k's .grad at row k of the gradient buffers; autograd then accumulates in place."""
    for i, p in enumerate(params):
        p.grad = layout.view(buffers, k, i)

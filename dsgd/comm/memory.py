"""Host buffers for what a step moves: large CPU tensors on transparent huge pages.

Between processes on one machine, Open MPI copies a large message straight from the sender's
memory into the receiver's, through the kernel, page by page. Buffers from torch's allocator (as
from malloc) are on 4 KiB pages; numpy asks the kernel for 2 MiB pages on arrays of 4 MiB and
more. On the development machine an 11M-float ring exchange between buffers on 2 MiB pages took
0.55 to 0.7 of the time between torch-allocated ones, whatever their offsets within a page
(`python -m dsgd.bench hand` reports both, exchange_s and exchange_small_pages_s). So the buffers
dsgd owns and moves (the flat parameter, gradient and state buffers of BucketLayout, the mixer's
receive and scratch buffers, what a compressed step returns) are allocated here: anonymous memory
advised MADV_HUGEPAGE. A buffer starts HEAD_BYTES past a 2 MiB boundary, not on it: Open MPI's
Allreduce of a buffer starting exactly on a page boundary took about 1.3x as long there (measured
beside starts 16, 64 and 1024 bytes in). The kernel is free to ignore the advice (transparent huge
pages `never`); the values are what torch.zeros / torch.empty would give (fresh anonymous memory
is zero).

DSGD_HUGE_PAGES=0 turns it off (plain torch allocations).
"""
from __future__ import annotations

import contextlib
import math
import mmap
import os

import torch

HUGE_PAGE = 2 << 20
HEAD_BYTES = 64       # a cache line past the 2 MiB boundary (see above)
MIN_BYTES = 4 << 20   # smaller buffers gain little and would each take a mapping of their own


_forced: list[bool] = []   # huge_pages(False) contexts, innermost last


def huge_pages_enabled() -> bool:
    if _forced:
        return _forced[-1]
    return os.environ.get("DSGD_HUGE_PAGES", "1").strip().lower() not in ("0", "false", "no")


@contextlib.contextmanager
def huge_pages(enabled: bool):
    """Allocate on huge pages (or not) inside the block, whatever DSGD_HUGE_PAGES says (benchmarks
    compare both)."""
    _forced.append(bool(enabled))
    try:
        yield
    finally:
        _forced.pop()


def _mapped(shape, dtype: torch.dtype) -> torch.Tensor | None:
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    try:
        region = mmap.mmap(-1, nbytes + HUGE_PAGE + HEAD_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, ValueError, AttributeError):
        return None
    try:
        region.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError, AttributeError):
        pass  # no transparent huge pages here: still an aligned zeroed buffer
    base = torch.frombuffer(region, dtype=torch.uint8, count=1).data_ptr()
    # the tensor owns the mapping (unmapped when the last view of it goes); its storage is
    # exactly its own bytes, so saving it writes no padding
    t = torch.frombuffer(region, dtype=dtype, count=count, offset=(-base) % HUGE_PAGE + HEAD_BYTES)
    return t.view(shape)


def _huge(shape, dtype: torch.dtype, device) -> torch.Tensor | None:
    if torch.device(device).type != "cpu" or not huge_pages_enabled() or math.prod(shape) * dtype.itemsize < MIN_BYTES:
        return None
    return _mapped(shape, dtype)


def host_zeros(*shape: int, dtype: torch.dtype = torch.float32, device="cpu") -> torch.Tensor:
    """torch.zeros(shape, dtype=dtype, device=device); on the CPU, a buffer of MIN_BYTES or more
    on huge pages (see the module's docstring)."""
    shape = tuple(int(s) for s in shape)
    t = _huge(shape, dtype, device)
    return t if t is not None else torch.zeros(shape, dtype=dtype, device=device)


def host_empty(*shape: int, dtype: torch.dtype = torch.float32, device="cpu") -> torch.Tensor:
    """torch.empty's counterpart of host_zeros (its huge-page buffers are zeroed anyway)."""
    shape = tuple(int(s) for s in shape)
    t = _huge(shape, dtype, device)
    return t if t is not None else torch.empty(shape, dtype=dtype, device=device)


def _storage_uses(t: torch.Tensor) -> int | None:
    """How many tensors share t's storage (torch's own count; None where this torch has no such count)."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    if count is None:
        return None
    return count(t.untyped_storage()._cdata)


class Recycler:
    """New tensors for results a step returns, taken from buffers of earlier steps that nothing
    refers to any more.

    take() hands out a fresh tensor object (a view of a kept buffer), so the caller holds it like a
    new allocation: as long as the caller, or anything it derived from it (a view, a numpy array),
    still refers to the memory, the buffer stays the caller's and is not handed out again. Only
    once every such reference is gone does a later take() reuse it: the caller never sees its
    values change, and a step in the steady state allocates nothing. At most `keep` buffers per
    shape are kept; past that, take() allocates without keeping. CPU buffers only (a GPU's
    caching allocator already reuses memory), and only where torch counts a storage's users.
    """

    def __init__(self, keep: int = 4):
        self.keep = keep
        self._kept: dict[tuple, list[tuple[torch.Tensor, int]]] = {}
        self.allocations = 0

    def take(self, shape, dtype: torch.dtype, device) -> torch.Tensor:
        shape = tuple(int(s) for s in shape)
        if torch.device(device).type != "cpu":
            return torch.empty(shape, dtype=dtype, device=device)
        kept = self._kept.setdefault((shape, dtype), [])
        for buf, idle in kept:
            if _storage_uses(buf) == idle:
                return buf.view(shape)
        self.allocations += 1
        buf = host_empty(*shape, dtype=dtype, device=device)
        idle = _storage_uses(buf)
        if idle is not None and len(kept) < self.keep:
            kept.append((buf, idle))
        return buf.view(shape)

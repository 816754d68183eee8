"""MPI transport through mpi4py: Allreduce for averages, Isend/Irecv for neighbours.

GPU tensors go straight to a CUDA-aware MPI; otherwise they are staged through pinned host
buffers that are reused across steps.
"""
from __future__ import annotations

import ctypes
import os
import time
from typing import Sequence

import torch

from .base import CommStats


def mpi_is_cuda_aware() -> bool:
    """Ask the MPI library (Open MPI's MPIX_Query_cuda_support); DSGD_MPI_CUDA_AWARE=0/1 overrides."""
    forced = os.environ.get("DSGD_MPI_CUDA_AWARE")
    if forced is not None:
        return forced.strip().lower() in ("1", "true", "yes")
    try:
        from mpi4py import MPI
        # dlsym on the extension module also searches the MPI library it links against.
        lib = ctypes.CDLL(MPI.__file__, mode=ctypes.RTLD_GLOBAL)
        query = getattr(lib, "MPIX_Query_cuda_support", None)
        return bool(query()) if query is not None else False
    except (OSError, AttributeError):
        return False


class CommTimeout(RuntimeError):
    """A communication step did not complete in time."""


def comm_timeout_s() -> float:
    """DSGD_COMM_TIMEOUT seconds (0: wait forever)."""
    try:
        return float(os.environ.get("DSGD_COMM_TIMEOUT", "0"))
    except ValueError:
        return 0.0


class _Requests:
    """Requests of one step; `peers` names who each request waits on, for the timeout report."""

    def __init__(self, reqs, keep, after=(), peers=(), rank=0):
        self.reqs, self.keep, self.after, self.peers, self.rank = reqs, keep, after, peers, rank

    def wait(self) -> None:
        from mpi4py import MPI
        if self.reqs:
            timeout = comm_timeout_s()
            if timeout > 0:
                self._wait_or_report(MPI, timeout)
            else:
                MPI.Request.Waitall(self.reqs)
            self.reqs = []
        for dst, src in self.after:
            dst.copy_(src)
        self.after, self.keep = (), None

    def _wait_or_report(self, MPI, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        nap = 1e-5
        while not MPI.Request.Testall(self.reqs):
            if time.monotonic() > deadline:
                pending = [p for r, p in zip(self.reqs, self.peers) if not r.Test()]
                raise CommTimeout(f"rank {self.rank} waited more than {timeout:g}s on: {', '.join(pending)}")
            time.sleep(nap)
            nap = min(2 * nap, 1e-3)


class MPICommunicator:
    """Communicator over an mpi4py communicator (COMM_WORLD by default)."""

    def __init__(self, comm=None, cuda_aware: bool | None = None, stage: bool | None = None):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.stats = CommStats()
        self.cuda_aware = mpi_is_cuda_aware() if cuda_aware is None else cuda_aware
        self._force_stage = bool(stage)
        self._staging: dict = {}

    # -- buffers ----------------------------------------------------------------------
    def _needs_staging(self, t: torch.Tensor) -> bool:
        return self._force_stage or (t.device.type != "cpu" and not self.cuda_aware)

    def _host(self, key, t: torch.Tensor) -> torch.Tensor:
        buf = self._staging.get(key)
        if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
            buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=torch.cuda.is_available())
            self._staging[key] = buf
        return buf

    @staticmethod
    def _mpi_buf(t: torch.Tensor):
        if t.device.type == "cpu":
            return t.detach().numpy()
        return t  # CUDA-aware MPI reads device memory through __dlpack__/__cuda_array_interface__

    def _stage_out(self, key, t):
        if not self._needs_staging(t):
            return t
        h = self._host(key, t)
        h.copy_(t)
        return h

    # -- collectives ------------------------------------------------------------------
    def allreduce_sum_(self, buf: torch.Tensor) -> None:
        self.iallreduce_sum(buf, blocking=True).wait()

    def iallreduce_sum(self, buf: torch.Tensor, blocking: bool = False):
        self.stats.allreduce_bytes += buf.numel() * buf.element_size()
        self.stats.messages += 1
        host = self._stage_out(("ar", buf.shape, buf.dtype), buf)
        after = [(buf, host)] if host is not buf else []
        if blocking and comm_timeout_s() <= 0:
            self.comm.Allreduce(self.MPI.IN_PLACE, self._mpi_buf(host), op=self.MPI.SUM)
            return _Requests([], None, after)
        req = self.comm.Iallreduce(self.MPI.IN_PLACE, self._mpi_buf(host), op=self.MPI.SUM)
        return _Requests([req], host, after, ["allreduce over all ranks"], self.rank)

    def iexchange(self, sends: Sequence[tuple[int, torch.Tensor]],
                  recvs: Sequence[tuple[int, torch.Tensor]], tag: int = 0):
        reqs, keep, after, peers = [], [], [], []
        for i, (peer, t) in enumerate(recvs):
            host = t if not self._needs_staging(t) else self._host(("r", tag, i), t)
            if host is not t:
                after.append((t, host))
            arr = self._mpi_buf(host)
            keep.append(arr)
            reqs.append(self.comm.Irecv(arr, source=peer, tag=tag))
            peers.append(f"receive from rank {peer}")
            self.stats.bytes_recv += t.numel() * t.element_size()
        for i, (peer, t) in enumerate(sends):
            arr = self._mpi_buf(self._stage_out(("s", tag, i), t.contiguous()))
            keep.append(arr)
            reqs.append(self.comm.Isend(arr, dest=peer, tag=tag))
            peers.append(f"send to rank {peer}")
            self.stats.bytes_sent += t.numel() * t.element_size()
            self.stats.messages += 1
        return _Requests(reqs, keep, after, peers, self.rank)

    def allreduce_floats(self, values: Sequence[float]) -> list[float]:
        import numpy as np
        a = np.asarray(values, dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, a, op=self.MPI.SUM)
        return a.tolist()

    def allreduce_max(self, value: float) -> float:
        return self.comm.allreduce(value, op=self.MPI.MAX)

    def bcast_object(self, obj, root: int = 0):
        return self.comm.bcast(obj, root=root)

    def allgather_object(self, obj):
        return self.comm.allgather(obj)

    def barrier(self) -> None:
        self.comm.Barrier()

"""MPI transport through mpi4py: Allreduce for averages, Isend/Irecv for neighbours.

GPU tensors go straight to a CUDA-aware MPI once their stream is synchronized; otherwise they
are staged through pinned host buffers, each lent to one operation until it completes and
reused across steps. Non-blocking collectives on device memory are staged unless the library
is known to support them (DSGD_MPI_DEVICE_NBC=1).
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
    """A communication step did not complete in time. `silent`: the ranks a roll call found not
    answering (None when no roll call was made)."""

    def __init__(self, message: str, silent: list | None = None):
        super().__init__(message)
        self.silent = silent


ROLL_CALL_TAG = 32001  # MPI guarantees tags up to 32767; the exchanges use small ones


def roll_call_grace_s(timeout: float) -> float:
    """How long a roll call waits for answers: the healthy ranks reach it at most about one step
    apart (each times out on its own clock), so a few seconds; never longer than the timeout."""
    return min(timeout, 3.0)


def comm_timeout_s() -> float:
    """DSGD_COMM_TIMEOUT seconds (0: wait forever)."""
    try:
        return float(os.environ.get("DSGD_COMM_TIMEOUT", "0"))
    except ValueError:
        return 0.0


# Requests a failure left unfreed, with their buffers (_Requests._wait_kept)
_ORPHANS: list = []


def _fault_tolerant(MPI) -> bool:
    return os.environ.get("OMPI_MCA_mpi_ft_enable", "").strip().lower() in ("1", "true", "yes", "enabled", "t", "y")


class _Requests:
    """Requests of one step; `peers` names who each request waits on, for the timeout report.

    `after` lists (destination, staged host copy) pairs copied back once the requests are done;
    `staged` are the host buffers this step owns, handed back to the pool when it finishes.
    """

    def __init__(self, reqs, keep, after=(), peers=(), rank=0, staged=(), pool=None, roll_call=None,
                 comm=None):
        self.reqs, self.keep, self.after, self.peers, self.rank = reqs, keep, after, peers, rank
        self.staged, self.pool = list(staged), pool
        self.roll_call = roll_call  # after a timeout: (timeout) -> the ranks that did not answer
        self.comm = comm  # the requests' communicator (point-to-point): waited on as _wait_kept says

    def wait(self) -> None:
        from mpi4py import MPI
        if self.reqs:
            timeout = comm_timeout_s()
            if timeout > 0:
                self._wait_or_report(MPI, timeout)
            elif self.comm is not None and _fault_tolerant(MPI):
                self._wait_kept(MPI)
            else:
                MPI.Request.Waitall(self.reqs)
            self.reqs = []
        for dst, src in self.after:
            dst.copy_(src)
        if self.pool is not None:
            self.pool.give(self.staged)
        self.after, self.keep, self.staged = (), None, []

    def _wait_kept(self, MPI) -> None:
        """Under ULFM: wait without freeing a request that failed. Once a peer died or the
        communicator was revoked, Open MPI completes requests in error (a send to a dead peer, a
        receive cancelled) while its transport still works on them, and aborts the process ("Send
        error after request freed", "Recv error after request freed") when that work fails after a
        wait or test has freed them. So the requests are only polled (MPI_Request_get_status frees
        nothing) and freed once all completed without error; after a failure every request of the
        step is kept, with its buffers, for the life of the process (_ORPHANS)."""
        try:
            status, polls = MPI.Status(), 0
            for r in self.reqs:
                while not r.Get_status(status):
                    polls += 1
                    if polls % 64 == 0 and self._failure_known():
                        raise MPI.Exception(MPI.ERR_PROC_FAILED)
                if status.Get_error() != MPI.SUCCESS:
                    raise MPI.Exception(status.Get_error())
        except BaseException:
            _ORPHANS.append((self.reqs, self.keep, self.staged, self.after))
            self.reqs, self.keep, self.staged, self.after = [], None, [], ()
            raise
        MPI.Request.Waitall(self.reqs)

    def _failure_known(self) -> bool:
        if self.comm.Is_revoked():
            return True
        from mpi4py import MPI
        failed = self.comm.Get_failed()
        size = failed.Get_size()
        if failed != MPI.GROUP_EMPTY:
            failed.Free()   # mpi4py frees no handle it collects
        return size > 0

    def test(self) -> bool:
        """Whether every request is complete (then finished as wait() finishes it), without blocking."""
        from mpi4py import MPI
        if self.reqs and self.comm is not None and _fault_tolerant(MPI) and comm_timeout_s() <= 0:
            if not all(r.Get_status() for r in self.reqs):   # frees nothing (_wait_kept); wait() sees a failure
                return False
        elif self.reqs and not MPI.Request.Testall(self.reqs):
            return False
        self.wait()
        return True

    def _wait_or_report(self, MPI, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        nap = 1e-5
        while not MPI.Request.Testall(self.reqs):
            if time.monotonic() > deadline:
                pending = [p for r, p in zip(self.reqs, self.peers) if not r.Test()]
                message = f"rank {self.rank} waited more than {timeout:g}s on: {', '.join(pending)}"
                silent = self.roll_call(timeout) if self.roll_call is not None else None
                if silent:
                    message += f"; rank{'s' if len(silent) > 1 else ''} {', '.join(map(str, silent))} did not answer"
                raise CommTimeout(message, silent)
            time.sleep(nap)
            nap = min(2 * nap, 1e-3)


class StagingPool:
    """Host buffers (pinned when CUDA is present) lent to one operation at a time.

    An operation takes a buffer when it is posted and gives it back when it completes, so two
    operations in flight never share one, whatever their shapes; buffers are reused across steps.
    """

    def __init__(self):
        self._free: dict[tuple, list[torch.Tensor]] = {}
        self.allocations = 0
        self.host_ptrs: set[int] = set()

    def take(self, like: torch.Tensor) -> torch.Tensor:
        free = self._free.get((tuple(like.shape), like.dtype))
        if free:
            return free.pop()
        self.allocations += 1
        buf = torch.empty(like.shape, dtype=like.dtype, pin_memory=torch.cuda.is_available())
        self.host_ptrs.add(buf.data_ptr())
        return buf

    def give(self, bufs) -> None:
        for b in bufs:
            self._free.setdefault((tuple(b.shape), b.dtype), []).append(b)


class MPICommunicator:
    """Communicator over an mpi4py communicator (COMM_WORLD by default).

    Args:
        cuda_aware: the MPI library reads device memory (default: ask it).
        stage: always copy through host buffers, even CPU tensors (tests the GPU-without-CUDA-aware path).
        device_nbc: the library also runs non-blocking collectives on device memory (default: no, so
            device buffers of an Iallreduce are staged; Open MPI's CUDA support covers blocking ones).
    """

    def __init__(self, comm=None, cuda_aware: bool | None = None, stage: bool | None = None,
                 device_nbc: bool | None = None):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.stats = CommStats()
        self.cuda_aware = mpi_is_cuda_aware() if cuda_aware is None else cuda_aware
        self.device_nbc = (os.environ.get("DSGD_MPI_DEVICE_NBC", "0").strip().lower() in ("1", "true", "yes")
                           if device_nbc is None else device_nbc)
        self._force_stage = bool(stage)
        self.staging = StagingPool()

    # -- device memory ------------------------------------------------------------------
    def _on_device(self, t: torch.Tensor) -> bool:
        return t.device.type != "cpu"

    def _synchronize(self, t: torch.Tensor) -> None:
        """Wait for the kernels queued on t's stream: MPI reads and writes device memory outside it."""
        torch.cuda.current_stream(t.device).synchronize()

    def _ready(self, tensors) -> None:
        """Before MPI sees device memory: its producers are done and no kernel still reads it."""
        for t in tensors:
            if self._on_device(t):
                self._synchronize(t)
                return  # one stream per rank: one synchronization covers every buffer

    # -- buffers ------------------------------------------------------------------------
    def _needs_staging(self, t: torch.Tensor, nonblocking_collective: bool = False) -> bool:
        if self._force_stage:
            return True
        if not self._on_device(t):
            return False
        return not self.cuda_aware or (nonblocking_collective and not self.device_nbc)

    @staticmethod
    def _mpi_buf(t: torch.Tensor):
        if t.device.type == "cpu":
            return t.detach().numpy()
        return t  # CUDA-aware MPI reads device memory through __dlpack__/__cuda_array_interface__

    # -- collectives --------------------------------------------------------------------
    def sums_half(self, dtype: torch.dtype) -> bool:
        """Whether allreduce_sum_ sums `dtype` (float16 / bfloat16) in that precision: MPI has no
        half-precision type of its own; Open MPI 5 sums MPI_FLOAT16_T, none has bfloat16 here."""
        named = {torch.float16: "FLOAT16_T"}.get(dtype)
        return named is not None and getattr(self.MPI, named, self.MPI.DATATYPE_NULL) != self.MPI.DATATYPE_NULL

    def allreduce_sum_(self, buf: torch.Tensor) -> None:
        self.iallreduce_sum(buf, blocking=True).wait()

    def iallreduce_sum(self, buf: torch.Tensor, blocking: bool = False):
        self.stats.allreduce_bytes += buf.numel() * buf.element_size()
        self.stats.messages += 1
        nonblocking = not blocking or comm_timeout_s() > 0  # a timeout needs Iallreduce to poll
        staged = []
        host = buf
        if self._needs_staging(buf, nonblocking_collective=nonblocking):
            host = self.staging.take(buf)
            host.copy_(buf)
            staged.append(host)
        else:
            self._ready([buf])
        after = [(buf, host)] if host is not buf else []
        if not nonblocking:
            self.comm.Allreduce(self.MPI.IN_PLACE, self._mpi_buf(host), op=self.MPI.SUM)
            return _Requests([], None, after, staged=staged, pool=self.staging)
        req = self.comm.Iallreduce(self.MPI.IN_PLACE, self._mpi_buf(host), op=self.MPI.SUM)
        return _Requests([req], host, after, ["allreduce over all ranks"], self.rank, staged, self.staging,
                         roll_call=self.silent_ranks)

    def iexchange(self, sends: Sequence[tuple[int, torch.Tensor]],
                  recvs: Sequence[tuple[int, torch.Tensor]], tag: int = 0):
        sends = [(peer, t.contiguous()) for peer, t in sends]  # may run a copy kernel: before _ready
        reqs, keep, after, peers, staged = [], [], [], [], []
        recv_bufs, send_bufs = [], []
        for peer, t in recvs:
            host = t
            if self._needs_staging(t):
                host = self.staging.take(t)
                staged.append(host)
                after.append((t, host))
            recv_bufs.append((peer, t, host))
        for peer, t in sends:
            host = t
            if self._needs_staging(t):
                host = self.staging.take(t)
                host.copy_(t)
                staged.append(host)
            send_bufs.append((peer, t, host))
        self._ready([h for _, _, h in recv_bufs + send_bufs])
        for peer, t, host in recv_bufs:
            arr = self._mpi_buf(host)
            keep.append(arr)
            reqs.append(self.comm.Irecv(arr, source=peer, tag=tag))
            peers.append(f"receive from rank {peer}")
            self.stats.bytes_recv += t.numel() * t.element_size()
        for peer, t, host in send_bufs:
            arr = self._mpi_buf(host)
            keep.append(arr)
            reqs.append(self.comm.Isend(arr, dest=peer, tag=tag))
            peers.append(f"send to rank {peer}")
            self.stats.bytes_sent += t.numel() * t.element_size()
            self.stats.messages += 1
        # the roll call after a timeout: every healthy rank takes part, whatever it was waiting on
        return _Requests(reqs, keep, after, peers, self.rank, staged, self.staging, roll_call=self.silent_ranks,
                         comm=self.comm)

    # Every collective below is blocking without --comm-timeout, and with it a non-blocking one
    # waited on against the deadline: a stalled rank then ends the job instead of hanging it.
    def _timed(self, start, what: str, keep=None) -> None:
        """Wait for the request START() posts; with a timeout, poll it and on expiry name the ranks
        that stopped answering."""
        _Requests([start()], keep, peers=[what], rank=self.rank, roll_call=self.silent_ranks).wait()

    def silent_ranks(self, timeout: float) -> list[int]:
        """After a wait timed out here: every rank that also timed out answers a roll call (one
        int to every other rank); the ranks not heard from within a few seconds are the ones that
        stopped, the ones to name."""
        import numpy as np
        grace = roll_call_grace_s(timeout)
        others = [r for r in range(self.size) if r != self.rank]
        mine = np.array([self.rank], dtype=np.int64)
        answers = {r: np.zeros(1, dtype=np.int64) for r in others}
        recvs = {r: self.comm.Irecv(answers[r], source=r, tag=ROLL_CALL_TAG) for r in others}
        sends = [self.comm.Isend(mine, dest=r, tag=ROLL_CALL_TAG) for r in others]
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not all(req.Test() for req in recvs.values()):
            time.sleep(1e-3)
        del sends  # eager one-int messages; the job is about to end either way
        return [r for r, req in recvs.items() if not req.Test()]

    def allreduce_floats(self, values: Sequence[float]) -> list[float]:
        import numpy as np
        a = np.asarray(values, dtype=np.float64)
        if comm_timeout_s() > 0:
            self._timed(lambda: self.comm.Iallreduce(self.MPI.IN_PLACE, a, op=self.MPI.SUM),
                        "a sum over all ranks (metrics)")
        else:
            self.comm.Allreduce(self.MPI.IN_PLACE, a, op=self.MPI.SUM)
        return a.tolist()

    def allreduce_max(self, value: float) -> float:
        import numpy as np
        a = np.array([value], dtype=np.float64)  # a buffer, not a pickled object: one small message
        if comm_timeout_s() > 0:
            self._timed(lambda: self.comm.Iallreduce(self.MPI.IN_PLACE, a, op=self.MPI.MAX),
                        "the per-step agreement over all ranks")
        else:
            self.comm.Allreduce(self.MPI.IN_PLACE, a, op=self.MPI.MAX)
        return float(a[0])

    def allgather_object(self, obj):
        if comm_timeout_s() <= 0:
            return self.comm.allgather(obj)
        import pickle
        import numpy as np
        data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
        length, lengths = np.array([data.size], dtype=np.int64), np.zeros(self.size, dtype=np.int64)
        self._timed(lambda: self.comm.Iallgather(length, lengths), "an exchange of settings over all ranks")
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        everything = np.empty(int(lengths.sum()), dtype=np.uint8)
        spec = [everything, (lengths.tolist(), offsets.tolist()), self.MPI.BYTE]
        self._timed(lambda: self.comm.Iallgatherv([data, self.MPI.BYTE], spec),
                    "an exchange of settings over all ranks", keep=data)
        return [pickle.loads(everything[o:o + n].tobytes()) for o, n in zip(offsets, lengths)]

    def allgather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's (K, P) rows stacked in rank order, (size * K, P); through host memory."""
        import numpy as np
        send = rows.detach().contiguous().cpu().numpy()
        recv = np.empty((self.size * send.shape[0],) + send.shape[1:], dtype=send.dtype)
        if comm_timeout_s() > 0:
            self._timed(lambda: self.comm.Iallgather(send, recv), "compressed payloads from all ranks", keep=send)
        else:
            self.comm.Allgather(send, recv)
        self.stats.bytes_sent += send.nbytes
        self.stats.bytes_recv += recv.nbytes - send.nbytes
        self.stats.messages += 1
        return torch.from_numpy(recv).to(rows.device)

    def barrier(self) -> None:
        if comm_timeout_s() > 0:
            self._timed(self.comm.Ibarrier, "a barrier over all ranks (checkpoint)")
        else:
            self.comm.Barrier()

    def split(self, color: int, key: int) -> "MPICommunicator":
        """The ranks of my color, ordered by key, as a communicator of their own (collective); its
        traffic is counted in this communicator's stats."""
        sub = MPICommunicator(self.comm.Split(int(color), int(key)), cuda_aware=self.cuda_aware,
                              stage=self._force_stage, device_nbc=self.device_nbc)
        sub.stats = self.stats
        return sub

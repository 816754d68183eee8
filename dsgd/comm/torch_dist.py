"""torch.distributed transport: gloo on CPU, NCCL on GPU; all_reduce and batched isend/irecv.

On GPUs the group is "cpu:gloo,cuda:nccl": tensors on the device go over NCCL, CPU-side values
(metric sums, objects) over gloo. Each rank's device is made current before the group is built,
so NCCL sees one GPU per rank.

Launched under mpirun, ranks learn their rank and world size from the MPI launcher's
environment and rendezvous at rank 0's address, which rank 0 publishes over MPI.
Under torchrun (RANK/WORLD_SIZE/MASTER_ADDR set) the usual env:// rendezvous is used.

The group's timeout is --comm-timeout (DSGD_COMM_TIMEOUT), else DEFAULT_TIMEOUT_S. It is
torch.distributed's own: it bounds the rendezvous and every operation of the group (gossip
sends and receives, allreduces, the setup and checkpoint barriers), not only neighbour
exchanges as with MPI. On gloo a timed-out operation raises on the rank that waited; it is
reported as a CommTimeout. NCCL operations are ended by torch's watchdog, which stops the rank.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import socket
from datetime import timedelta
from typing import Sequence

import torch
import torch.distributed as dist

from .base import CommStats
from .mpi import CommTimeout, comm_timeout_s

DEFAULT_TIMEOUT_S = 300.0  # the group's timeout when --comm-timeout is 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _destroy_at_exit() -> None:
    """Tear the group down before the interpreter (and then MPI) shuts down: gloo's threads must not
    outlive it, or a rank can abort in its exit path after all its work is done."""
    if dist.is_initialized():
        import gc
        gc.collect()  # tensors a finished collective still holds, freed while the interpreter is whole
        dist.destroy_process_group()


def init_process_group(backend: str = "gloo", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Join (or reuse) the default process group."""
    if dist.is_initialized():
        return
    atexit.register(_destroy_at_exit)
    timeout = timedelta(seconds=timeout_s)
    if "RANK" in os.environ and "MASTER_ADDR" in os.environ:
        dist.init_process_group(backend, timeout=timeout)
        return
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    addr = None
    if comm.rank == 0:
        host = os.environ.get("DSGD_MASTER_ADDR") or socket.gethostbyname(socket.gethostname())
        addr = f"tcp://{host}:{_free_port()}"
    addr = comm.bcast(addr, root=0)
    dist.init_process_group(backend, init_method=addr, rank=comm.rank, world_size=comm.size, timeout=timeout)


class _Timeouts:
    """Turns gloo's "Timed out waiting" errors into a CommTimeout naming the rank and the operation."""

    def __init__(self, rank: int, timeout_s: float, what: str):
        self.rank, self.timeout_s, self.what = rank, timeout_s, what

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if kind is not None and issubclass(kind, RuntimeError) and "timed out" in str(err).lower():
            raise CommTimeout(f"rank {self.rank} waited more than {self.timeout_s:g}s on: torch.distributed "
                              f"{self.what}") from None
        return False


class _Works:
    def __init__(self, works, keep, timeouts: _Timeouts | None = None):
        self.works, self.keep, self.timeouts = works, keep, timeouts

    def wait(self) -> None:
        with self.timeouts or contextlib.nullcontext():
            for w in self.works:
                w.wait()
        self.works, self.keep = [], None

    def test(self) -> bool:
        """Whether every operation is complete (then finished), without blocking."""
        if not all(w.is_completed() for w in self.works):
            return False
        self.wait()
        return True


def backend_for(device: torch.device) -> str:
    """gloo for CPU training; NCCL for device tensors with gloo beside it for CPU values."""
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


class TorchDistCommunicator:
    """Communicator over the default torch.distributed process group.

    Args:
        device: where the training tensors live (default cpu); picks the backend.
        backend: override, e.g. "gloo" for GPU tensors staged by the user.
        timeout_s: the group's timeout; None: DSGD_COMM_TIMEOUT (--comm-timeout), 0: DEFAULT_TIMEOUT_S.
    """

    def __init__(self, device: torch.device | str = "cpu", backend: str | None = None,
                 timeout_s: float | None = None):
        device = torch.device(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)  # before the group: NCCL binds each rank to the current GPU
        self.backend = backend or backend_for(device)
        self.timeout_s = (comm_timeout_s() if timeout_s is None else timeout_s) or DEFAULT_TIMEOUT_S
        init_process_group(self.backend, self.timeout_s)
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.stats = CommStats()
        self.group, self.members = None, None   # the default group; a split() view sets both

    def split(self, color: int, key: int) -> "TorchDistCommunicator":
        """The ranks of my color as a group, ordered by key (collective: every rank calls it, with the
        same colors seen everywhere); traffic is counted in this communicator's stats."""
        colors = self.allgather_object((int(color), int(key), self.rank))
        mine = None
        for c in sorted({c for c, _, _ in colors}):  # every rank creates every group, in one order
            members = [r for _, _, r in sorted((k, r, r) for cc, k, r in colors if cc == c)]
            group = dist.new_group(members)
            if c == color:
                mine = (group, members)
        view = object.__new__(TorchDistCommunicator)
        view.backend, view.timeout_s, view.stats = self.backend, self.timeout_s, self.stats
        view.group, view.members = mine
        view.rank, view.size = view.members.index(self.rank), len(view.members)
        return view

    def _peer(self, peer: int) -> int:
        """The global rank torch's point-to-point calls take, for a rank of this group."""
        return peer if self.members is None else self.members[peer]

    def _timeouts(self, what: str) -> _Timeouts:
        return _Timeouts(self.rank, self.timeout_s, what)

    def sums_half(self, dtype: torch.dtype) -> bool:
        """Whether allreduce_sum_ sums `dtype` in that precision: gloo and NCCL sum float16 and bfloat16."""
        return dtype in (torch.float16, torch.bfloat16)

    def allreduce_sum_(self, buf: torch.Tensor) -> None:
        self.iallreduce_sum(buf, blocking=True).wait()

    def iallreduce_sum(self, buf: torch.Tensor, blocking: bool = False):
        self.stats.allreduce_bytes += buf.numel() * buf.element_size()
        self.stats.messages += 1
        with self._timeouts("allreduce"):
            work = dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=self.group, async_op=not blocking)
        return _Works([work] if work is not None else [], buf, self._timeouts("allreduce"))

    def iexchange(self, sends: Sequence[tuple[int, torch.Tensor]],
                  recvs: Sequence[tuple[int, torch.Tensor]], tag: int = 0):
        ops = [dist.P2POp(dist.irecv, t, self._peer(peer), group=self.group, tag=tag) for peer, t in recvs]
        sends = [(peer, t.contiguous()) for peer, t in sends]
        ops += [dist.P2POp(dist.isend, t, self._peer(peer), group=self.group, tag=tag) for peer, t in sends]
        for _, t in recvs:
            self.stats.bytes_recv += t.numel() * t.element_size()
        for _, t in sends:
            self.stats.bytes_sent += t.numel() * t.element_size()
            self.stats.messages += 1
        works = dist.batch_isend_irecv(ops) if ops else []
        peers = ", ".join(f"receive from rank {peer}" for peer, _ in recvs)
        return _Works(works, (sends, recvs), self._timeouts(peers or "send"))

    def allreduce_floats(self, values: Sequence[float]) -> list[float]:
        t = torch.tensor(list(values), dtype=torch.float64)  # CPU: goes over gloo
        with self._timeouts("allreduce"):
            dist.all_reduce(t, group=self.group)
        return t.tolist()

    def allreduce_max(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64)
        with self._timeouts("allreduce"):
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return float(t.item())

    def allgather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's (K, P) rows stacked in rank order, (size * K, P)."""
        rows = rows.contiguous()
        out = [torch.empty_like(rows) for _ in range(self.size)]
        with self._timeouts("allgather"):
            dist.all_gather(out, rows, group=self.group)
        self.stats.bytes_sent += rows.numel() * rows.element_size()
        self.stats.bytes_recv += (self.size - 1) * rows.numel() * rows.element_size()
        self.stats.messages += 1
        return torch.cat(out)

    def allgather_object(self, obj):
        out = [None] * self.size
        with self._timeouts("allgather"):
            dist.all_gather_object(out, obj, group=self.group)
        return out

    def close(self) -> None:
        """Tear the process group down while the interpreter is whole: after the last collective,
        before exit. gloo's threads release tensors they held; doing that during interpreter
        shutdown can abort a rank that has finished all its work."""
        _destroy_at_exit()

    def barrier(self) -> None:
        with self._timeouts("barrier"):
            dist.barrier(group=self.group)

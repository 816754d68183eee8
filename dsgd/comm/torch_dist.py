"""torch.distributed transport: gloo on CPU, NCCL on GPU; all_reduce and batched isend/irecv.

On GPUs the group is "cpu:gloo,cuda:nccl": tensors on the device go over NCCL, CPU-side values
(metric sums, objects) over gloo. Each rank's device is made current before the group is built,
so NCCL sees one GPU per rank.

Launched under mpirun, ranks learn their rank and world size from the MPI launcher's
environment and rendezvous at rank 0's address, which rank 0 publishes over MPI.
Under torchrun (RANK/WORLD_SIZE/MASTER_ADDR set) the usual env:// rendezvous is used.
"""
from __future__ import annotations

import atexit
import os
import socket
from datetime import timedelta
from typing import Sequence

import torch
import torch.distributed as dist

from .base import CommStats


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _destroy_at_exit() -> None:
    """Tear the group down before the interpreter (and then MPI) shuts down: gloo's threads must not
    outlive it, or a rank can abort in its exit path after all its work is done."""
    if dist.is_initialized():
        dist.destroy_process_group()


def init_process_group(backend: str = "gloo", timeout_s: float = 300.0) -> None:
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


class _Works:
    def __init__(self, works, keep):
        self.works, self.keep = works, keep

    def wait(self) -> None:
        for w in self.works:
            w.wait()
        self.works, self.keep = [], None


def backend_for(device: torch.device) -> str:
    """gloo for CPU training; NCCL for device tensors with gloo beside it for CPU values."""
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


class TorchDistCommunicator:
    """Communicator over the default torch.distributed process group.

    Args:
        device: where the training tensors live (default cpu); picks the backend.
        backend: override, e.g. "gloo" for GPU tensors staged by the user.
    """

    def __init__(self, device: torch.device | str = "cpu", backend: str | None = None):
        device = torch.device(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)  # before the group: NCCL binds each rank to the current GPU
        self.backend = backend or backend_for(device)
        init_process_group(self.backend)
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.stats = CommStats()

    def allreduce_sum_(self, buf: torch.Tensor) -> None:
        self.iallreduce_sum(buf, blocking=True).wait()

    def iallreduce_sum(self, buf: torch.Tensor, blocking: bool = False):
        self.stats.allreduce_bytes += buf.numel() * buf.element_size()
        self.stats.messages += 1
        work = dist.all_reduce(buf, op=dist.ReduceOp.SUM, async_op=not blocking)
        return _Works([work] if work is not None else [], buf)

    def iexchange(self, sends: Sequence[tuple[int, torch.Tensor]],
                  recvs: Sequence[tuple[int, torch.Tensor]], tag: int = 0):
        ops = [dist.P2POp(dist.irecv, t, peer, tag=tag) for peer, t in recvs]
        sends = [(peer, t.contiguous()) for peer, t in sends]
        ops += [dist.P2POp(dist.isend, t, peer, tag=tag) for peer, t in sends]
        for _, t in recvs:
            self.stats.bytes_recv += t.numel() * t.element_size()
        for _, t in sends:
            self.stats.bytes_sent += t.numel() * t.element_size()
            self.stats.messages += 1
        works = dist.batch_isend_irecv(ops) if ops else []
        return _Works(works, (sends, recvs))

    def allreduce_floats(self, values: Sequence[float]) -> list[float]:
        t = torch.tensor(list(values), dtype=torch.float64)  # CPU: goes over gloo
        dist.all_reduce(t)
        return t.tolist()

    def allreduce_max(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def allgather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's (K, P) rows stacked in rank order, (size * K, P)."""
        rows = rows.contiguous()
        out = [torch.empty_like(rows) for _ in range(self.size)]
        dist.all_gather(out, rows)
        self.stats.bytes_sent += rows.numel() * rows.element_size()
        self.stats.bytes_recv += (self.size - 1) * rows.numel() * rows.element_size()
        self.stats.messages += 1
        return torch.cat(out)

    def allgather_object(self, obj):
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        dist.barrier()

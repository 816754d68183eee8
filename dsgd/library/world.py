"""The world a training script runs in: this process's rank, its workers, the mixing step."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dsgd.comm import Mixer, SelfCommunicator, make_communicator
from dsgd.library.checks import whole_number


class World:
    """COMM (a dsgd communicator) and the workers each rank holds; worker i of the job is row
    i % workers_per_rank of rank i // workers_per_rank. An elastic world (`start(..., elastic=True)`)
    may lose ranks: its optimizer then swaps in the survivors' communicator and mixer; with
    `replace=True` new processes take the lost ranks' places (`joined` is True in those)."""

    elastic = False
    replace = False   # replacements join after a loss (dsgd.elastic.join)
    joining = None    # in a replacement, the job's state until its optimizer takes it
    joined = False    # this process joined a running job as a replacement

    def __init__(self, comm, workers_per_rank: int = 1):
        self.comm, self.workers_per_rank = comm, whole_number("workers_per_rank", workers_per_rank)
        self.mixer = Mixer(comm, self.workers_per_rank)

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def size(self) -> int:
        return self.comm.size

    @property
    def n_workers(self) -> int:
        return self.size * self.workers_per_rank

    @property
    def first_worker(self) -> int:
        return self.rank * self.workers_per_rank

    @torch.no_grad()
    def broadcast_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Every worker's rows of TENSORS (shaped (workers_per_rank, ...)) become worker 0's: one
        identical start. A sum of worker 0's values and zeros, so the copy is exact."""
        for t in tensors:
            first = t.detach().reshape(t.shape[0], -1)[:1]
            buf = first.clone() if self.rank == 0 else torch.zeros_like(first)
            self.comm.allreduce_sum_(buf)
            t.copy_(buf.reshape(1, *t.shape[1:]).expand_as(t))

    @torch.no_grad()
    def mix_(self, tensors: Sequence[torch.Tensor], W) -> None:
        """x_i <- sum_j W[i, j] x_j in place, for each of this rank's tensors (with several workers
        per rank: tensors shaped (workers_per_rank, ...), row k being worker first_worker + k)."""
        W = np.asarray(W, dtype=np.float64)
        if W.shape != (self.n_workers, self.n_workers):
            raise ValueError(f"W must be {self.n_workers} x {self.n_workers} (the job's workers), got {W.shape}")
        K = self.workers_per_rank
        rows = [t.reshape(K, -1) if K > 1 else t.reshape(1, -1) for t in tensors]
        if any(r.data_ptr() != t.data_ptr() for r, t in zip(rows, tensors)):
            raise ValueError("mix_ needs contiguous tensors (it mixes them in place)")
        self.mixer.mix_(rows, W)


    def close(self) -> None:
        """End this process's part of the job: a transport with threads of its own (torch.distributed's
        gloo) stops them now, while the interpreter is whole, rather than at exit."""
        close = getattr(self.comm, "close", None)
        if close is not None:
            close()


def start(backend: str = "mpi", workers_per_rank: int = 1, device="cpu", elastic: bool = False,
          replace: bool = False) -> World:
    """The world of this process: "mpi" (under mpirun; one rank alone without it), "torch"
    (torch.distributed under torchrun, gloo on the CPU, NCCL on a GPU), or "self" (every worker in
    this process: tests and notebooks, with workers_per_rank > 1).

    elastic: survive lost ranks (MPI under `mpirun --with-ft ulfm`; refused in one line otherwise):
    the optimizer's steps go on over the survivors (docs/elastic.md).
    replace: with elastic, the survivors start this script again once per lost rank (MPI's dynamic
    processes) and the new processes join with their neighbour's state; in such a process this call
    connects it to the running job (`world.joined`), and its optimizer starts at the job's step."""
    workers_per_rank = whole_number("workers_per_rank", workers_per_rank)   # before any process joins or connects
    if replace and not elastic:
        raise ValueError("replace=True needs elastic=True: replacements join an elastic world")
    if elastic:
        from dsgd.elastic import elastic_communicator
        joining = None
        if replace:
            from dsgd.elastic import join
            comm, joining = join.connect(backend, int(workers_per_rank))
        else:
            comm = elastic_communicator(backend)
        world = World(comm, workers_per_rank)
        world.elastic, world.replace = True, bool(replace)
        world.joining, world.joined = joining, joining is not None
        return world
    comm = SelfCommunicator() if backend == "self" else make_communicator(backend, torch.device(device))
    return World(comm, workers_per_rank)

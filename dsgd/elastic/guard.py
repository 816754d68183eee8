"""The elastic step: a step either completes on every survivor, or every survivor redoes it on a
smaller world.

    snapshot -> the rule's step -> agree(ok) --yes--> next step
                                      | no (a peer died: it raised here, or somewhere else)
                                      v
             restore the snapshot, shrink the communicator, rebuild the mixer and the rule at the
             new n (dsgd.elastic.state), agree(ok) -> redo the step

The agreement costs one fault-tolerant collective per step; it is what lets a rank that finished
its exchange learn that a neighbour's failed, so no survivor is a step ahead of another. The
failed step is redone, not skipped: the gradients the user computed at the step's start are still
valid at the restored parameters, so the run equals one whose membership changed just before it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from dsgd.comm import Mixer, ulfm

from . import state
from .snapshot import Snapshot

log = logging.getLogger("dsgd.elastic")


@dataclass(frozen=True)
class MembershipChange:
    """One change of membership: at STEP the ranks LOST_RANKS (numbered as before the change) and their
    workers LOST_WORKERS left; WORKERS_AFTER workers go on over TOPOLOGY (FALLBACK says why it is not
    the old family); SECONDS from the failed step's start to the new world's readiness."""

    step: int
    lost_ranks: Tuple[int, ...]
    lost_workers: Tuple[int, ...]
    workers_before: int
    workers_after: int
    topology: str
    fallback: Optional[str]
    seconds: float

    def line(self) -> str:
        ranks = ", ".join(map(str, self.lost_ranks))
        workers = ", ".join(map(str, self.lost_workers))
        text = (f"elastic: step {self.step}: lost rank{'s' if len(self.lost_ranks) > 1 else ''} {ranks} "
                f"(worker{'s' if len(self.lost_workers) > 1 else ''} {workers}); {self.workers_before} -> "
                f"{self.workers_after} workers, topology {self.topology}, recovered in {self.seconds:.2f}s")
        return text + (f"; {self.fallback}" if self.fallback else "")


class ElasticGuard:
    """Runs a DecentralizedOptimizer's steps so that a lost rank costs a recovery, not the job.

    Args:
        opt: the optimizer; its world came from `dsgd.start("mpi", elastic=True)`.
    """

    def __init__(self, opt):
        why = state.unsupported(opt.rule)
        if why is not None:
            raise ValueError(why)
        self.opt, self.changes = opt, []   # changes: MembershipChange / MembershipJoin, oldest first
        self.first_workers = opt.world.n_workers   # the n the rule was built for (a replacement builds it there too)
        self._snapshot = Snapshot()
        self._lost = 0   # ranks lost since the last join: replacements owed (world.replace)

    def run(self, body: Callable[[], None]) -> None:
        """BODY (one step of the rule) on every survivor, redone on the survivors after a failure;
        with `replace`, replacements for the lost ranks join once the step is done (dsgd.elastic.join)."""
        opt = self.opt
        self._snapshot.save(opt)
        started = time.monotonic()
        while True:
            ok = self._attempt(lambda: (body(), opt.engine.finish_all()))
            if ulfm.agree(opt.world.comm.comm, ok):
                break
            self._snapshot.restore(opt)
            self._recover(started)
            self._snapshot.save(opt)   # the restored values with the new rule's state: a second failure comes back here
        if self._lost and getattr(opt.world, "replace", False):
            from . import join
            lost, self._lost = self._lost, 0   # a rank lost during the join counts again (join._resize_and_record)
            join.grow(self, lost)

    def _attempt(self, work) -> bool:
        """Run WORK; False when a peer's death interrupted it (after revoking the communicator, so
        survivors still waiting on this rank stop waiting)."""
        try:
            work()
            return True
        except Exception as e:  # noqa: BLE001 - anything but a lost peer is the user's error, raised
            comm = self.opt.world.comm.comm
            if not ulfm.is_process_failure(e, comm):
                raise
            ulfm.revoke(comm)
            return False

    def _recover(self, started: float) -> None:
        """Shrink to the survivors and rebuild the world, the mixer and the rule, until the
        survivors agree that the rebuild worked (another rank may die meanwhile)."""
        opt, world = self.opt, self.opt.world
        K, before = world.workers_per_rank, world.size
        members = list(range(before))   # current rank -> rank before the failed step
        while True:
            members = [members[r] for r in self._shrink()]
            built: list = []
            ok = self._attempt(lambda: built.append(state.resize(opt.rule, world.n_workers, opt.engine)))
            if ulfm.agree(world.comm.comm, ok):
                break
        opt.rule, topology, fallback = built[0]
        lost = tuple(r for r in range(before) if r not in members)
        change = MembershipChange(opt.steps, lost, tuple(r * K + k for r in lost for k in range(K)), before * K,
                                  world.n_workers, topology, fallback, time.monotonic() - started)
        self.changes.append(change)
        self._lost += len(lost)
        if world.rank == 0:
            log.warning(change.line())

    def _shrink(self) -> List[int]:
        """Replace the world's communicator and mixer by the survivors'; their ranks in the old one."""
        from mpi4py import MPI
        new, old_ranks = ulfm.shrink(MPI, self.opt.world.comm.comm)
        self.use_communicator(new)
        return old_ranks

    def use_communicator(self, new) -> None:
        """Run the world on NEW (an mpi4py communicator: the survivors', or the survivors' and the
        replacements'): a new dsgd communicator and mixer whose counters go on from the old ones."""
        from dsgd.comm.mpi import MPICommunicator
        opt, world = self.opt, self.opt.world
        old = world.comm
        comm = MPICommunicator(new, cuda_aware=old.cuda_aware, stage=old._force_stage, device_nbc=old.device_nbc)
        comm.stats = old.stats   # the traffic counters go on
        mixer = Mixer(comm, world.workers_per_rank)
        mixer.worker_bytes_sent[:] = world.mixer.worker_bytes_sent
        world.comm, world.mixer = comm, mixer
        opt.engine.mixer = mixer
        opt.workers.first_worker = world.first_worker

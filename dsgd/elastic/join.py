"""Replacements: new processes join a running elastic job and the graph grows back.

With `dsgd.start("mpi", elastic=True, replace=True)`, the survivors of a change of membership start
one new process per lost rank once the failed step has been redone, and the job goes on over the
grown world from the next step:

    survivors                                   each new process (the same script, started again)
    MPI_Comm_spawn(sys.executable, orig argv)   dsgd.start(...): MPI_Comm_get_parent
    merge -> one communicator, new ranks last   merge
    connect every survivor to every new rank    connect
    agree                                       agree
    the last survivor sends its state           receives it (dsgd.start returns)
                                                DecentralizedOptimizer(...): loads it
    rule resized to the grown n                 rule resized to the grown n, from the same schedule
    agree                                       agree; opt.steps = the job's step

A new process takes the last ranks and therefore the last workers; its workers start as copies of
the last survivor's (parameters, module buffers, torch optimizer state, the rule's state), which is
their neighbour in worker order; then every rank resizes the rule to the grown n exactly as at a
loss (dsgd.elastic.state), so the rule's state is made consistent for the new workers by the same
policy. No checkpoint is read. Nothing runs per step: a join happens only after a loss.
"""
from __future__ import annotations

import io
import logging
import os
import pickle
import sys
import time
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from dsgd.comm import ulfm

from . import state

log = logging.getLogger("dsgd.elastic")

BUNDLE_FORMAT = "dsgd-elastic-join-1"
BUNDLE_TAG = 32003

_replace_worlds = 0   # worlds started with replace=True in this process (one is allowed)


@dataclass(frozen=True)
class MembershipJoin:
    """New processes joined: from STEP on, the ranks JOINED_RANKS with the workers JOINED_WORKERS (the
    last ranks and workers) train with the others; WORKERS_BEFORE -> WORKERS_AFTER workers over
    TOPOLOGY (FALLBACK says why it is not the old family); their state came from SOURCE_RANK;
    SECONDS on this rank from the start of the join (a survivor: the spawn) to the grown world's
    readiness, mostly the new processes' start-up."""

    step: int
    joined_ranks: Tuple[int, ...]
    joined_workers: Tuple[int, ...]
    workers_before: int
    workers_after: int
    topology: str
    fallback: Optional[str]
    source_rank: int
    seconds: float

    def line(self) -> str:
        ranks = ", ".join(map(str, self.joined_ranks))
        workers = ", ".join(map(str, self.joined_workers))
        text = (f"elastic: step {self.step}: rank{'s' if len(self.joined_ranks) > 1 else ''} {ranks} joined "
                f"(worker{'s' if len(self.joined_workers) > 1 else ''} {workers}); {self.workers_before} -> "
                f"{self.workers_after} workers, topology {self.topology}, state from rank {self.source_rank}, "
                f"joined in {self.seconds:.2f}s")
        return text + (f"; {self.fallback}" if self.fallback else "")


class JoinFailed(RuntimeError):
    """A rank was lost while replacements were started, before they were connected to the job: the
    job cannot go on (docs/elastic.md, limits)."""


def _cpu_copies(obj):
    """OBJ with every tensor replaced by a CPU copy of its own (a view into a flat buffer would
    otherwise carry the whole buffer along when pickled)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copies(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copies(v) for v in obj)
    return obj


def _topology(spec: str, n: int):
    import topologies
    return topologies.from_spec(spec, n)


class _Pickler(pickle.Pickler):
    """Pickles a schedule's graph as its spec (a Topology holds functions pickle cannot carry): the
    survivors' graphs are rebuilt ones, which `from_spec(topo.spec, n)` gives back."""

    def reducer_override(self, obj):
        import topologies
        if isinstance(obj, topologies.Topology):
            return _topology, (obj.spec, obj.n)
        return NotImplemented


def dumps(obj) -> bytes:
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return out.getvalue()


def replacement_command() -> Tuple[str, list]:
    """(program, arguments) that start this script again: this interpreter with the command line
    this process was started with (`python -m mpi4py train.py --flags` -> the same)."""
    argv = list(getattr(sys, "orig_argv", []))[1:] or list(sys.argv)
    return sys.executable, argv


def connect(backend: str, workers_per_rank: int):
    """(the communicator of an elastic world that may grow, the job's state or None): in a process
    the job spawned, the running job's communicator with this process's ranks last and the state
    its neighbour sent; otherwise this job's (`elastic_communicator`)."""
    global _replace_worlds
    started = time.monotonic()
    from . import elastic_communicator
    if backend != "mpi":
        elastic_communicator(backend)   # the one-line refusal
    from mpi4py import MPI
    why = ulfm.can_spawn(MPI)
    if why is not None:
        raise RuntimeError(why)
    if _replace_worlds:
        raise ValueError("one elastic world with replace=True per process: a replacement joins the world of "
                         "the first dsgd.start(..., replace=True) its script makes")
    inter = ulfm.parent(MPI)
    if inter is None:
        comm = elastic_communicator(backend)
        _replace_worlds += 1
        return comm, None
    problem = ulfm.fault_tolerance_problem(MPI)
    if problem is not None:
        raise RuntimeError(problem)
    from dsgd.comm.mpi import MPICommunicator
    first_new = inter.Get_remote_size()
    merged = ulfm.merge(MPI, inter, joining=True)
    ulfm.connect(MPI, merged, first_new)
    if not ulfm.agree(merged, True):
        raise JoinFailed("elastic: a rank was lost while this process joined the job")
    bundle = pickle.loads(merged.recv(source=first_new - 1, tag=BUNDLE_TAG))
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise JoinFailed("elastic: the job sent no state this version can read")
    if bundle["workers_per_rank"] != workers_per_rank:
        raise ValueError(f"this replacement has {workers_per_rank} worker(s) per rank, the job "
                         f"{bundle['workers_per_rank']}: start it with the same workers_per_rank")
    bundle["started"] = started
    _replace_worlds += 1
    return MPICommunicator(merged), bundle


def grow(guard, count: int) -> None:
    """On the survivors (after a redone step): start COUNT replacements, send them the state of the
    last survivor, rebuild the rule at the grown n, and record the join (or, when a rank is lost
    meanwhile, the loss: `_resize_and_record`)."""
    from mpi4py import MPI
    opt, world = guard.opt, guard.opt.world
    started = time.monotonic()
    before, K = world.size, world.workers_per_rank
    try:
        command, args = replacement_command()
        try:
            inter = ulfm.spawn(MPI, world.comm.comm, count, command, args)
        except MPI.Exception as e:   # the launcher refused (every survivor hears it): go on without
            if ulfm.is_process_failure(e, world.comm.comm):
                raise
            if world.rank == 0:
                log.warning(f"elastic: step {opt.steps}: no replacement could be started ({e}; the launcher "
                            f"needs a free slot for each, the lost ranks' are not given back); going on with "
                            f"{world.n_workers} workers")
            return
        merged = ulfm.merge(MPI, inter, joining=False)
        ulfm.connect(MPI, merged, before)
        if not ulfm.agree(merged, True):
            raise JoinFailed(f"elastic: step {opt.steps}: a rank was lost while {count} replacement(s) joined")
    except Exception as e:  # noqa: BLE001 - a lost rank before the grown communicator exists ends the job
        if isinstance(e, JoinFailed) or not ulfm.is_process_failure(e, world.comm.comm):
            raise
        raise JoinFailed(f"elastic: step {opt.steps}: a rank was lost while {count} replacement(s) were started "
                         f"({e}); a failure before the new processes are connected is not survived") from e
    source = before - 1
    bundle = None
    if world.rank == source:
        bundle = dumps({"format": BUNDLE_FORMAT, "workers_per_rank": K, "first_workers": guard.first_workers,
                        "steps": opt.steps, "rule": type(opt.rule).__name__, "schedule": opt.rule.schedule,
                        "rule_state": _cpu_copies(opt.rule.state_dict()),
                        "workers": _cpu_copies(opt.workers.state_dict()), "changes": list(guard.changes),
                        "source": source})
    guard.use_communicator(merged)

    def send() -> None:
        if bundle is not None:
            for j in range(before, merged.Get_size()):
                merged.send(bundle, dest=j, tag=BUNDLE_TAG)
    _resize_and_record(guard, before, source, started, first=send)


@torch.no_grad()
def adopt(opt, bundle: dict) -> None:
    """In a replacement, while its DecentralizedOptimizer is built: take the neighbour's state (the
    rule OPT holds was built for the job's first n, of the same kind as the job's), the job's step
    count and history, and resize the rule to the grown n with the survivors."""
    guard, world = opt._elastic, opt.world
    if type(opt.rule).__name__ != bundle["rule"]:
        raise ValueError(f"this replacement built {type(opt.rule).__name__}, the job runs {bundle['rule']}: "
                         f"the script must build the same algorithm")
    try:
        opt.workers.load_state_dict(bundle["workers"])
    except (RuntimeError, ValueError, KeyError, IndexError) as e:
        raise ValueError(f"this replacement's models or optimizers do not match the job's ({e})") from e
    opt.rule.load_state_dict(bundle["rule_state"])
    opt.rule.schedule = bundle["schedule"]   # the survivors' schedule: both sides resize the same one
    guard.first_workers = bundle["first_workers"]
    guard.changes[:] = list(bundle["changes"])
    opt.steps = int(bundle["steps"])
    _resize_and_record(guard, bundle["source"] + 1, bundle["source"], bundle["started"])


def _resize_and_record(guard, before: int, source: int, started: float, first=None) -> None:
    """Every rank of the grown world (BEFORE ranks and the new ones): FIRST (the source sends the
    state), the rule at the grown n (the same schedule on every rank, so the same graph), an
    agreement that it worked, the record of the join and its log line (rank 0). A rank lost here,
    once the grown communicator exists, is a loss like any other: the ranks left shrink and resize
    as at a failed step (ElasticGuard._recover), and the next step starts replacements again; a
    replacement that survives it goes on as a member."""
    opt, world = guard.opt, guard.opt.world
    K = world.workers_per_rank
    built: list = []
    ok = guard._attempt(lambda: (first is not None and first(),
                                 built.append(state.resize(opt.rule, world.n_workers, opt.engine))))
    if not ulfm.agree(world.comm.comm, ok):
        guard._recover(started)
        return
    opt.rule, topology, fallback = built[0]
    joined = tuple(range(before, world.size))
    record = MembershipJoin(opt.steps, joined, tuple(r * K + k for r in joined for k in range(K)), before * K,
                            world.n_workers, topology, fallback, source, time.monotonic() - started)
    guard.changes.append(record)
    if world.rank == 0:
        log.warning(record.line())


def leave(code: int = 0) -> None:
    """End this process now, its output flushed, without MPI_Finalize: after a failure, and in any
    job that replacements joined, Open MPI's MPI_Finalize may wait forever (open-mpi/ompi#11404;
    it also waits for every connected process). Call it after the last collective."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - leaving anyway
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(int(code))

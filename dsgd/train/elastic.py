"""The command-line trainer's elastic mode (`--elastic true`): a lost rank costs a recovery, not the run.

Every collective part of the loop (a training step, an evaluation, a checkpoint) runs through
dsgd.elastic's guard: when a rank dies, the survivors put back what the interrupted part changed,
shrink the communicator, rebuild the graph and the rule at the new number of workers, and redo the
part on the new world. Then the run itself adapts (`Membership.apply`):

- the survivors are numbered 0.. again in their old order; rank 0 of the survivors writes the
  metrics (a row `{"event": "membership", ...}` and one log line per change);
- the data of the lost workers (`--lost-data`): `reassign` splits the training set again over the
  survivors, as a run of that many workers would, with its epochs counted from the change; `drop`
  keeps each survivor on its own shard, so the lost shards are not seen again;
- the run's length and learning-rate schedule stay in steps as they were: an `epoch` in the metrics
  keeps the start's number of steps, whatever the number of workers;
- checkpoints go on from the survivors, with the history of changes in their settings, so that a
  `--resume` on the smaller world rebuilds the same data, graph and schedule (`History`).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, List, Optional

import torch

from dsgd.elastic import ElasticGuard
from dsgd.elastic.snapshot import Snapshot
from dsgd.library.world import World

LOST_DATA = ("reassign", "drop")


# -- which samples a worker reads after changes of membership ----------------------------------------
class Renumbered:
    """SAMPLER read by the survivors: worker j reads what worker IDS[j] read before (--lost-data drop)."""

    def __init__(self, sampler, ids: List[int]):
        self.base, self.ids = sampler, list(ids)
        self.n_workers, self.local_batch, self.steps_per_epoch = len(ids), sampler.local_batch, sampler.steps_per_epoch

    def indices(self, worker: int, step: int) -> torch.Tensor:
        return self.base.indices(self.ids[worker], step)


class FromStep:
    """SAMPLER whose step 0 is the run's step START: the data split again at a change (--lost-data reassign)."""

    def __init__(self, sampler, start: int):
        self.base, self.start = sampler, int(start)
        self.n_workers, self.local_batch, self.steps_per_epoch = sampler.n_workers, sampler.local_batch, \
            sampler.steps_per_epoch

    def indices(self, worker: int, step: int) -> torch.Tensor:
        return self.base.indices(worker, step - self.start)


# -- the record of a run's changes, kept in its checkpoints ----------------------------------------
class History:
    """The run's start (workers, steps per epoch) and its changes of membership, oldest first; saved in
    every checkpoint's settings (`meta["elastic"]`) so that a resume rebuilds the same run."""

    def __init__(self, workers: int, steps_per_epoch: int, changes: Optional[list] = None):
        self.workers, self.steps_per_epoch = int(workers), int(steps_per_epoch)
        self.changes = list(changes or [])

    def as_dict(self) -> dict:
        return {"workers": self.workers, "steps_per_epoch": self.steps_per_epoch, "changes": list(self.changes)}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(d["workers"], d["steps_per_epoch"], d.get("changes"))

    @property
    def topology(self) -> Optional[str]:
        """The graph the last change left (None: none changed it)."""
        return self.changes[-1]["topology"] if self.changes else None

    def data(self, make: Callable[[int, int], tuple]) -> tuple:
        """(the sampler, each worker's part or None) after every change. MAKE(n_workers, key) gives a
        fresh (sampler, parts) for n workers: key 0 the start's, else the step of the change that
        split the data again."""
        sampler, parts = make(self.workers, 0)
        for c in self.changes:
            if c["lost_data"] == "drop":
                sampler = Renumbered(sampler, c["kept"])
                parts = None if parts is None else [parts[i] for i in c["kept"]]
            else:
                sampler, parts = make(c["workers_after"], c["step"])
                sampler = FromStep(sampler, c["step"])
        return sampler, parts

    def kept(self) -> List[int]:
        """The start's worker ids of today's workers, in order."""
        ids = list(range(self.workers))
        for c in self.changes:
            ids = [ids[i] for i in c["kept"]]
        return ids


def change_record(change, lost_data: str) -> dict:
    """A MembershipChange as a metrics row and a history entry."""
    lost = set(change.lost_workers)
    return {"step": change.step, "event": "membership", "lost_ranks": list(change.lost_ranks),
            "lost_workers": list(change.lost_workers), "workers_before": change.workers_before,
            "workers_after": change.workers_after, "topology": change.topology, "fallback": change.fallback,
            "recovered_s": round(change.seconds, 4), "lost_data": lost_data,
            "kept": [w for w in range(change.workers_before) if w not in lost]}


# -- the guard over the trainer's parts -------------------------------------------------------------
class _RunView:
    """What the guard reads and replaces, over the trainer's Run: its workers, rule, engine, world."""

    def __init__(self, run, world: World):
        self._run, self.world = run, world

    workers = property(lambda self: self._run.workers)
    engine = property(lambda self: self._run.engine)
    optimizers = property(lambda self: self._run.workers.optimizers)

    @property
    def rule(self):
        return self._run.rule

    @rule.setter
    def rule(self, rule) -> None:
        self._run.set_rule(rule)

    @property
    def steps(self) -> int:
        return self._run.step

    @steps.setter
    def steps(self, step: int) -> None:
        self._run.step = step


class _RunSnapshot(Snapshot):
    """The guard's snapshot plus the run's running sums, which a step that is redone must not count twice."""

    def save(self, opt) -> None:
        super().save(opt)
        m = opt._run.meters
        self._meters = (list(m.window), m.compute_s)

    def restore(self, opt) -> None:
        super().restore(opt)
        m = opt._run.meters
        m.window, m.compute_s = list(self._meters[0]), self._meters[1]


class Membership(ElasticGuard):
    """The trainer's elastic guard: `run(part)` for every collective part of the loop; after a change
    the run is rebuilt for the survivors before the part is redone."""

    def __init__(self, run):
        world = World.__new__(World)
        world.comm, world.workers_per_rank, world.mixer, world.elastic = run.comm, run.workers.K, run.mixer, True
        super().__init__(_RunView(run, world))
        self._snapshot = _RunSnapshot()
        logging.getLogger("dsgd.elastic").setLevel(logging.ERROR)   # the run's log says it, with the data policy
        self.trainer = run

    def _recover(self, started: float) -> None:
        super()._recover(started)
        self.apply(self.changes[-1])

    def apply(self, change) -> None:
        """The run after CHANGE: the survivors' communicator everywhere, the data, the plan, the log."""
        run, world = self.trainer, self.opt.world
        record = change_record(change, run.cfg.run.lost_data)
        run.history.changes.append(record)
        run.adopt_world(world.comm, world.mixer)
        run.log.become(world.rank)
        run.parts.plan = run.plan = dataclasses.replace(run.plan, n_workers=world.n_workers)
        run.parts.sampler, run.parts.parts = run.history.data(run.fresh_data)
        run.rebuild_heterogeneity()
        run.log.metrics(record)
        run.log.info(change.line() + f"; data of lost workers: {record['lost_data']}")


"""The one training loop. Every algorithm is the same loop: it asks the rule to step, never names an algorithm.

Read beside the README's own-script example: draw each worker's batch, compute its gradient, let
the rule step (the optimizer's update and whatever the rule exchanges), evaluate the average model
now and then, checkpoint. Building the parts, evaluating and checkpointing live in their own modules.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from dsgd.config import Config, ConfigError
from dsgd.elastic import state as elastic_state
from dsgd.data.partition import class_histogram
from dsgd.device import pick_device
from dsgd.train import build, rundir
from dsgd.train.assemble import assemble
from dsgd.data.rng import derive_seed, generator
from dsgd.data.samplers import make_sampler
from dsgd.elastic.inject import die_if_due
from dsgd.train.checkpointer import Checkpointer, check_worker_count  # noqa: F401 (the CLI checks it early)
from dsgd.train.elastic import History, Membership
from dsgd.train.evaluator import Evaluator, NonFiniteError
from dsgd.train.heterogeneity import Heterogeneity
from dsgd.train.metrics import Meters, RunLog
from dsgd.train.partition_report import write_partition
from dsgd.train.preempt import Preempted

__all__ = ["NonFiniteError", "Run", "check_worker_count"]


def straggler(cfg: Config, rank: int):
    """step -> the seconds this rank waits after its gradients (--straggler-*), or None when it is not the
    straggler: a slow rank made on purpose, so that the lab can measure who waits for it."""
    r = cfg.run
    if rank != r.straggler_rank or r.straggler_delay <= 0:
        return None
    if not r.straggler_random:
        return lambda step: r.straggler_delay
    return lambda step: 2 * r.straggler_delay * float(torch.rand((), generator=generator(r.seed, "straggler", step)))


class Run:
    """One process's share of a run, built from the settings: the parts (dsgd.train.assemble), an
    evaluator and a checkpointer over them, and the loop."""

    def __init__(self, cfg: Config, mixer, out: Path, device: torch.device | None = None, history: dict | None = None):
        """HISTORY: the changes of membership of the elastic run a resume continues (its checkpoint's)."""
        self.cfg, self.mixer, self.comm, self.out = cfg, mixer, mixer.comm, out
        r = cfg.run
        if r.threads:
            torch.set_num_threads(r.threads)
        self.device = pick_device(r.device) if device is None else device
        self.history = History.from_dict(history) if history else None
        p = self.parts = assemble(cfg, mixer, self.device, self.history)
        if self.history is None and r.elastic:
            self.history = History(p.plan.n_workers, p.plan.steps_per_epoch)
        self.train_set, self.test_set, self.plan, self.lr = p.train_set, p.test_set, p.plan, p.lr
        self.rule, self.workers, self.engine = p.rule, p.workers, p.engine
        self.log = RunLog(out, self.comm.rank)
        if self.history is not None and self.history.changes:
            p.sampler, p.parts = self.history.data(self.fresh_data)
        elif p.parts is not None:
            self._report_partition(out)
        self.meters = Meters()
        self.evaluator = Evaluator(cfg, p, mixer, self.log, self.meters)
        self.rebuild_heterogeneity()
        self.checkpoints = Checkpointer(cfg, p, self.comm, out, self.log, self.components(), self.stop_if_any_rank,
                                        self.history)
        self.step = 0
        self.stop = None        # a StopSignal when the run may be stopped by signals (the CLI installs one)
        self.stop_signal = 0    # the signal the ranks agreed to stop on
        self.resumed = None     # a resume's record for resumes.jsonl (the CLI sets it after restore)
        self.straggle = straggler(cfg, self.comm.rank)   # step -> seconds this rank sleeps, or None
        self.membership = None   # elastic: survives lost ranks
        if r.elastic:
            why = elastic_state.unsupported(self.rule)
            if why is not None:
                raise ConfigError(f"--elastic: {why.replace('overlap=False', '--overlap false')}")
            self.membership = Membership(self)

    # -- the parts a change of membership rebuilds ---------------------------------------------
    def fresh_data(self, n_workers: int, key: int) -> tuple:
        """(sampler, each worker's part or None) for N_WORKERS as a run would start them: key 0 the
        run's own start, else the step at which an elastic run split its data again."""
        cfg, r = self.cfg, self.cfg.run
        start = key == 0
        parts = build.partition(cfg, n_workers, self.train_set)
        seed = r.seed if start else derive_seed(r.seed, "elastic", key)
        spe = self.plan.steps_per_epoch if start else (cfg.data.steps_per_epoch or None)
        return make_sampler(cfg.data.replacement, len(self.train_set), n_workers, r.batch_size, seed, spe,
                            parts=parts), parts

    def rebuild_heterogeneity(self) -> None:
        p, r = self.parts, self.cfg.run
        self.evaluator.heterogeneity = Heterogeneity(
            p.train_set, p.parts, p.workers.workers, r.probe_samples, r.seed, self.device,
            p.task) if build.heterogeneity_metrics(self.cfg) else None

    def adopt_world(self, comm, mixer) -> None:
        """Everything that talks goes through COMM and MIXER from now on (the survivors' after a change)."""
        self.comm, self.mixer = comm, mixer
        self.evaluator.comm, self.evaluator.mixer = comm, mixer
        self.checkpoints.comm = comm
        self.checkpoints.components["mixer"] = mixer

    def set_rule(self, rule) -> None:
        self.rule = self.parts.rule = rule
        self.checkpoints.components["rule"] = rule

    def collective(self, part):
        """PART() (a step, an evaluation, a checkpoint); in an elastic run redone on the survivors if a
        rank dies during it. Returns what PART returned (its last time)."""
        if self.membership is None:
            return part()
        out = []
        self.membership.run(lambda: out.append(part()))
        return out[-1]

    def _report_partition(self, out: Path) -> None:
        """partition.json / partition.png (rank 0) and one log line on the part sizes."""
        hist = class_histogram(self.train_set.labels.cpu().numpy(), self.parts.parts, self.train_set.num_classes)
        sizes = hist.sum(axis=1)
        if self.comm.rank == 0:
            note = write_partition(out, self.cfg.data.partition, hist)
            if note:
                self.log.info(note)
        top = (hist.max(axis=1) / sizes).mean()
        self.log.info(f"partition {self.cfg.data.partition}: {len(sizes)} parts of {sizes.min()}..{sizes.max()} "
                      f"samples; a worker's largest class is {100 * top:.0f}% of its part on average")

    def components(self) -> dict:
        """Everything that carries state across steps; each saves and restores its own."""
        return {"workers": self.workers, "rule": self.rule, "mixer": self.mixer, "meters": self.meters}

    def batch_of(self, step: int):
        return self.parts.batch(step, self.cfg, self.device)

    # -- one step ------------------------------------------------------------------------------
    def train_step(self, step: int) -> None:
        """One step of every local worker: gradients, the step's agreement, then the rule's step (an
        exchange it leaves in flight is the engine's, finished before anything reads the parameters)."""
        self.collective(lambda: self._train_step(step))

    def _train_step(self, step: int) -> None:
        die_if_due("step", step)
        self.workers.set_lr(self.lr(step))
        t0 = time.perf_counter()
        loss_sum, correct, seen = self.workers.compute_grads(self.batch_of(step), self.cfg.run.physical_batch_size)
        if self.straggle is not None:
            time.sleep(self.straggle(step))
        self.meters.compute_s += time.perf_counter() - t0
        self.agree_step(not math.isfinite(loss_sum), f"loss is not finite at step {step}")
        self.meters.add_batch(loss_sum, correct, seen)
        self.engine.finish()
        t0, comm0 = time.perf_counter(), self.mixer.stats.comm_s
        self.engine.adopt(self.rule.step(step, self.engine))
        # the rule's local arithmetic counts as compute; its mixing is already in comm_s
        self.meters.compute_s += time.perf_counter() - t0 - (self.mixer.stats.comm_s - comm0)

    def stop_if_any_rank(self, bad: bool, what: str) -> None:
        """Agree on a local failure: every rank raises at the same point, naming the highest bad rank.

        One small collective; without it a rank that stops alone leaves the others waiting.
        """
        worst = self.comm.allreduce_max(float(self.comm.rank + 1 if bad else 0))
        if worst > 0:
            raise NonFiniteError(f"{what} on rank {int(worst) - 1}")

    def agree_step(self, bad: bool, what: str) -> None:
        """The step's one agreement: a failure on any rank (raised here), or a stop signal on any rank
        (remembered: the run checkpoints after this step). Encoded in one maximum: 2 (rank + 1) for a
        failure outranks the signal number's code 1 + signum / 64."""
        signum = self.stop.received if self.stop is not None else 0
        code = 2.0 * (self.comm.rank + 1) if bad else (signum / 64.0 if signum else 0.0)
        worst = self.comm.allreduce_max(code)
        if worst >= 2:
            raise NonFiniteError(f"{what} on rank {int(worst // 2) - 1}")
        if worst > 0:
            self.stop_signal = int(round(worst * 64))
            if self.stop is not None:
                self.stop.agreed(self.stop_signal)

    # -- evaluation and checkpoints ------------------------------------------------------------
    def evaluate(self, step: int) -> dict:
        return self.collective(lambda: self.evaluator(step, self.device))

    def meta(self) -> dict:
        return self.checkpoints.meta()

    def save(self) -> None:
        self.collective(lambda: self.checkpoints.save(self.step))

    def restore(self, resume: str) -> None:
        self.step = self.checkpoints.restore(resume)

    @property
    def events(self) -> list:
        return self.checkpoints.events

    def checkpoint_due(self) -> bool:
        every = self.cfg.run.checkpoint_every
        return (self.step in self.lr.decay_points or (every > 0 and self.step % every == 0)
                or self.step == self.plan.total_steps)

    def checkpoint_now(self) -> None:
        if self.stop is not None:
            self.stop.checkpointing = True
        try:
            self.save()
        finally:
            if self.stop is not None:
                self.stop.checkpointing = False

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg, r = self.cfg, self.cfg.run
        if self.comm.rank == 0:
            rundir.write_settings(self.out, cfg.as_dict(), self.resumed)
        for event in self.events:
            self.log.metrics(event)
        self.log.info(f"{cfg.algo.algorithm}: {self.plan.n_workers} workers ({self.comm.size} ranks x "
                      f"{r.workers_per_rank}), {self.plan.total_steps} steps, {self.plan.steps_per_epoch}/epoch, "
                      f"device {self.device}")
        self.evaluator.t_start = self.meters.start_clock()  # wall_s counts the earlier segments' seconds too
        row = self.evaluate(0) if r.eval_on_start and self.step == 0 else None
        if self.step == 0:
            self.save()
        t_log, s_log = time.time(), self.step
        t_first, s_first = t_log, s_log  # this segment's start, for the time left
        total = self.plan.total_steps
        while self.step < total:
            self.train_step(self.step)
            self.step += 1
            if self.step % r.log_every == 0 or self.step == total:
                dt = max(1e-9, time.time() - t_log)
                rate = (self.step - s_log) * self.plan.n_workers * r.batch_size / dt
                window = self.meters.window
                loss, acc = window[0] / max(1, window[2]), window[1] / max(1, window[2])
                eta = (total - self.step) * (time.time() - t_first) / (self.step - s_first)
                self.log.progress(self.step, total, loss, acc, self.rule.action(self.step - 1).local_steps, rate, eta)
                t_log, s_log = time.time(), self.step
            if self.step % r.eval_every == 0 or self.step == total:
                row = self.evaluate(self.step)
            if self.checkpoint_due() or self.stop_signal:
                self.checkpoint_now()
            if self.stop_signal:
                raise Preempted(self.step, self.stop_signal)
        self.engine.finish_all()
        return row

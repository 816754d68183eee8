"""The one training loop. Every algorithm is the same loop: it asks the rule to step, never names an algorithm."""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch

from dsgd.config import Config, ConfigError
from dsgd.data.augment import Augmentation, augmentation_for
from dsgd.data.batches import local_batch
from dsgd.data.datasets import load_dataset
from dsgd.data.partition import class_histogram
from dsgd.data.samplers import make_sampler
from dsgd.device import pick_device
from dsgd.models import build_model
from dsgd.train import build
from dsgd.train import checkpoint as ckpt
from dsgd.train import rundir
from dsgd.train.evaluate import (consensus_distance, evaluate, has_batchnorm, load_average_,
                                 reestimate_batchnorm_)
from dsgd.train.engine import Engine
from dsgd.train.heterogeneity import Heterogeneity
from dsgd.train.partition_report import write_partition
from dsgd.train.metrics import Meters, RunLog
from dsgd.train.preempt import Preempted
from dsgd.train.regroup import Regroup
from dsgd.train.vectorized import make_workers


class NonFiniteError(RuntimeError):
    """Loss or parameters became NaN or infinite."""


def check_worker_count(old_ranks: int, old_K: int, size: int, K: int, resize: bool) -> None:
    """A resume keeps the number of workers (ranks x workers per rank) unless --resize true says otherwise."""
    if old_ranks * old_K == size * K or resize:
        return
    same = (f"--workers-per-rank {old_ranks * old_K // size} for the same {old_ranks * old_K} workers, or "
            if (old_ranks * old_K) % size == 0 else "")
    raise ckpt.CheckpointError(
        f"cannot resume: the checkpoint has {old_ranks * old_K} workers ({old_ranks} ranks x {old_K}), "
        f"this run has {size * K} ({size} x {K}); give {same}--resize true to continue with {size * K} workers "
        f"(not bit-exact)")


class Run:
    """Everything one process needs for a run, built from the settings."""

    def __init__(self, cfg: Config, mixer, out: Path, device: torch.device | None = None):
        self.cfg, self.mixer, self.comm = cfg, mixer, mixer.comm
        r = cfg.run
        if r.threads:
            torch.set_num_threads(r.threads)
        self.device = pick_device(r.device) if device is None else device
        self.train_set = load_dataset(cfg.data.dataset, cfg.data.data_dir, train=True)
        self.test_set = load_dataset(cfg.data.dataset, cfg.data.data_dir, train=False)
        self.plan = build.plan(cfg, self.comm.size, len(self.train_set))
        self.parts = build.partition(cfg, self.plan.n_workers, self.train_set)  # None: iid
        self.lr = build.lr_schedule(cfg, self.plan)
        self.rule = build.rule(cfg, self.plan, self.lr)
        torch.manual_seed(r.seed)  # same seed on every rank: all workers start identical
        try:
            model = build_model(cfg.model.model, self.train_set.in_channels, self.train_set.num_classes,
                                self.train_set.image_size, norm=cfg.model.norm,
                                n_groups=cfg.model.n_groups if cfg.model.norm == "gn" else None)
        except ValueError as e:  # a setting the model's shape refuses: --n-groups
            reason = str(e).removeprefix(f"{cfg.model.model}: ")
            raise ConfigError(f"--n-groups {cfg.model.n_groups} does not fit --model {cfg.model.model}: {reason}") \
                from None
        build.check_model(cfg, model)
        K = r.workers_per_rank
        self.sampler = make_sampler(cfg.data.replacement, len(self.train_set), self.plan.n_workers,
                                    r.batch_size, r.seed, self.plan.steps_per_epoch, parts=self.parts)
        aug = cfg.data.augment
        # unset: the dataset's usual choice; true: random crop (padding 4) and horizontal flip
        self.augment = augmentation_for(cfg.data.dataset) if aug is None else (
            Augmentation(crop=True, flip=True, padding=4) if aug else False)
        probe = self.batch_of(0)(self.comm.rank * K)
        self.workers = make_workers(model, K, self.comm.rank * K, cfg.optim, self.device, r.vectorize, probe)
        self.eval_model = copy.deepcopy(model).to(self.device)
        self.engine = Engine(mixer, self.workers, self.lr, cfg.algo.mix_buffers, cfg.algo.mix_optimizer_state,
                             weight_decay=self._decay_per_tensor(model))
        self.rule.attach(self.engine)
        self.log = RunLog(out, self.comm.rank)
        if self.parts is not None:
            self._report_partition(out)
        self.heterogeneity = Heterogeneity(self.train_set, self.parts, self.workers.workers, r.probe_samples,
                                           r.seed, self.device) if build.heterogeneity_metrics(cfg) else None
        self.meters = Meters()
        self.out = out
        self.step = 0
        self.stop = None        # a StopSignal when the run may be stopped by signals (the CLI installs one)
        self.stop_signal = 0    # the signal the ranks agreed to stop on
        self.resumed = None     # a resume's record for resumes.jsonl (the CLI sets it after restore)
        self.events = []        # metrics rows to log once training goes on (a resize)

    def _report_partition(self, out: Path) -> None:
        """partition.json / partition.png (rank 0) and one log line on the part sizes."""
        hist = class_histogram(self.train_set.labels.cpu().numpy(), self.parts, self.train_set.num_classes)
        sizes = hist.sum(axis=1)
        if self.comm.rank == 0:
            note = write_partition(out, self.cfg.data.partition, hist)
            if note:
                self.log.info(note)
        top = (hist.max(axis=1) / sizes).mean()
        self.log.info(f"partition {self.cfg.data.partition}: {len(sizes)} parts of {sizes.min()}..{sizes.max()} "
                      f"samples; a worker's largest class is {100 * top:.0f}% of its part on average")

    def _decay_per_tensor(self, model) -> list[float]:
        """Weight decay of each parameter tensor, for rules that update by their own recursion."""
        o = self.cfg.optim
        return [0.0 if o.no_decay_norm_bias and p.ndim <= 1 else o.weight_decay for p in model.parameters()]

    def components(self) -> dict:
        """Everything that carries state across steps; each saves and restores its own."""
        return {"workers": self.workers, "rule": self.rule, "mixer": self.mixer, "meters": self.meters}

    def batch_of(self, step: int):
        d, r = self.cfg.data, self.cfg.run
        return lambda worker: local_batch(self.train_set, self.sampler, worker, step, r.seed, self.augment,
                                          d.label_noise, self.device)

    def train_step(self, step: int, pending):
        """One step of every local worker; returns a mixing step still in flight (overlap), if any."""
        self.workers.set_lr(self.lr(step))
        t0 = time.perf_counter()
        loss_sum, correct, seen = self.workers.compute_grads(self.batch_of(step), self.cfg.run.physical_batch_size)
        self.meters.compute_s += time.perf_counter() - t0
        self.agree_step(not math.isfinite(loss_sum), f"loss is not finite at step {step}")
        self.meters.add_batch(loss_sum, correct, seen)
        if pending is not None:
            pending.wait()
        t0, comm0 = time.perf_counter(), self.mixer.stats.comm_s
        pending = self.rule.step(step, self.engine)
        # the rule's local arithmetic counts as compute; its mixing is already in comm_s
        self.meters.compute_s += time.perf_counter() - t0 - (self.mixer.stats.comm_s - comm0)
        return pending

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

    def evaluate(self, step: int) -> dict:
        cfg, w, comm = self.cfg, self.workers, self.comm
        avg = self.mixer.average(w.params)
        cd = consensus_distance(comm, w.params, avg, self.plan.n_workers)
        if not all(torch.isfinite(a).all() for a in avg):
            raise NonFiniteError(f"parameters are not finite at step {step}")
        load_average_(self.eval_model, w.layout, avg)
        if has_batchnorm(self.eval_model):
            if cfg.run.bn_batches > 0:
                reestimate_batchnorm_(self.eval_model, self.train_set, cfg.run.bn_batches, cfg.run.batch_size,
                                      cfg.run.seed, step, self.device)
            else:
                floats = [b for b in self.eval_model.buffers() if b.is_floating_point()]
                averaged = [b for b in self.mixer.average(w.packed_buffers())]
                torch.nn.utils.vector_to_parameters(torch.cat(averaged), floats)
        test_loss, test_acc = evaluate(self.eval_model, self.test_set, comm, self.device, cfg.run.eval_samples)
        loss_sum, correct, seen = comm.allreduce_floats(self.meters.window)
        bytes_sent, comm_s, compute_s = comm.allreduce_floats(
            [float(self.mixer.worker_bytes_sent.sum()), self.mixer.stats.comm_s, self.meters.compute_s])
        act = self.rule.action(max(0, step - 1))
        row = {
            "step": step, "epoch": step / self.plan.steps_per_epoch, "phase": act.phase,
            "lr": self.lr(max(0, step - 1)), "local_steps": act.local_steps,
            "train_loss": loss_sum / seen if seen else None, "train_acc": correct / seen if seen else None,
            "test_loss": test_loss, "test_acc": test_acc, "consensus_distance": cd,
            "bytes_sent": bytes_sent / self.plan.n_workers,
            "comm_s": comm_s / comm.size, "compute_s": compute_s / comm.size,
            "wall_s": time.time() - self._t_start,
        }
        if self.heterogeneity is not None:
            row.update(self.heterogeneity.measure(self.eval_model, w.models, self.test_set, self.mixer,
                                                  w.first_worker, self.device, cfg.run.eval_samples))
        self.meters.window = [0.0, 0.0, 0.0]
        self.log.metrics(row)
        self.log.info(f"eval step {step}: test acc {test_acc:.4f} loss {test_loss:.4f}  consensus {cd:.3g}  "
                      f"sent/worker {row['bytes_sent'] / 1e6:.1f} MB")
        return row

    # -- checkpoints ------------------------------------------------------------------------
    def meta(self) -> dict:
        c = self.cfg
        return {"world_size": self.comm.size, "workers_per_rank": c.run.workers_per_rank,
                "algorithm": c.algo.algorithm, "topology": c.gossip.topology if build.uses_topology(c) else None,
                "seed": c.run.seed, "model": c.model.model, "dataset": c.data.dataset, "batch_size": c.run.batch_size,
                "partition": c.data.partition}

    def save(self) -> None:
        """Every rank writes its workers and hashes them as they are written; rank 0 then writes the
        checkpoint's manifest with every rank's checksum and names it the latest."""
        w = self.workers
        self.stop_if_any_rank(not all(bool(torch.isfinite(b).all()) for b in w.params),
                              f"parameters are not finite at step {self.step} (not checkpointing them)")
        state = {name: part.state_dict() for name, part in self.components().items()}
        state.update(rng=ckpt.rng_state(), meta=self.meta())
        written = ckpt.save_rank(self.out, self.step, self.comm.rank, state)
        self.comm.barrier()
        files = self.comm.allgather_object(written)
        if self.comm.rank == 0:
            ckpt.write_manifest(self.out, self.step, self.comm.size, self.meta(), self.cfg.run.keep_checkpoints,
                                pinned={0, *self.lr.decay_points}, files=files)
        self.comm.barrier()

    def restore(self, resume: str) -> None:
        choice = ckpt.choose(resume)
        ckpt_dir, manifest = choice.ckpt_dir, choice.manifest
        if choice.note:
            self.log.info(choice.note)
        # the chosen checkpoint's own settings (a run resumed in another layout saves later ones in that)
        mine, theirs = self.meta(), ckpt.load_rank(ckpt_dir, 0, mmap=True, manifest=manifest)["meta"]
        theirs = {"partition": "iid", **theirs}  # checkpoints from before partitions existed
        for key in ("algorithm", "topology", "seed", "model", "dataset", "batch_size", "partition"):
            if theirs.get(key) != mine[key]:
                raise ckpt.CheckpointError(f"cannot resume: the checkpoint has {key}={theirs.get(key)!r}, "
                                           f"this run has {key}={mine[key]!r}")
        old_ranks, old_K = int(theirs["world_size"]), int(theirs["workers_per_rank"])
        size, K, n = self.comm.size, self.cfg.run.workers_per_rank, self.plan.n_workers
        resized = old_ranks * old_K != n
        check_worker_count(old_ranks, old_K, size, K, self.cfg.run.resize)
        if (old_ranks, old_K) == (size, K):
            state = ckpt.load_rank(ckpt_dir, self.comm.rank, manifest=manifest)
            for name, part in self.components().items():
                part.load_state_dict(state[name])
        else:
            state = self._regroup(ckpt_dir, manifest, old_ranks, old_K, resized)
        ckpt.restore_rng(state["rng"])
        self.step = int(state["step"])
        if self.comm.rank == 0:
            self.log.truncate_after(self.step)
        how = "" if (old_ranks, old_K) == (size, K) else f" (saved as {old_ranks} ranks x {old_K} workers)"
        self.log.info(f"resumed from {ckpt_dir} at step {self.step}{how}")
        if resized:
            self.log.info(f"resized from {old_ranks * old_K} to {n} workers at step {self.step}: workers "
                          f"{min(n, old_ranks * old_K)}.. are new (the average model) or dropped; the rule's "
                          f"own state restarts and data is re-partitioned over {n} workers")
            self.events.append({"step": self.step, "event": "resize", "workers_before": old_ranks * old_K,
                                "workers_after": n})
        self.cfg.run.resize = False  # it applies to this resume; config.yaml must not carry it to the next

    def _regroup(self, ckpt_dir: Path, manifest: dict, old_ranks: int, old_K: int, resized: bool) -> dict:
        """Load another layout's checkpoint: this rank's workers' rows from whichever old files hold
        them (mapped, so only those rows are read). Returns the old file whose RNG state and step
        this rank continues with."""
        old = [ckpt.load_rank(ckpt_dir, r, mmap=True, manifest=manifest) for r in range(old_ranks)]
        first, K = self.comm.rank * self.cfg.run.workers_per_rank, self.cfg.run.workers_per_rank
        for name, part in self.components().items():
            if name == "rule" and resized:
                continue  # its recursion's invariants hold for the old set of workers only
            g = Regroup([s[name] for s in old], old_K, first, K, self.comm.rank)
            part.load_state_dict(part.regroup_state(g))
        if resized:
            self.rule.attach(self.engine)  # a fresh state, built from the workers as they are now
        return old[Regroup(old, old_K, first, K, self.comm.rank).owner()]

    def checkpoint_due(self) -> bool:
        every = self.cfg.run.checkpoint_every
        return (self.step in self.lr.decay_points or (every > 0 and self.step % every == 0)
                or self.step == self.plan.total_steps)

    def run(self) -> dict:
        cfg, r = self.cfg, self.cfg.run
        if self.comm.rank == 0:
            rundir.write_settings(self.out, cfg.as_dict(), self.resumed)
        for event in self.events:
            self.log.metrics(event)
        self.log.info(f"{cfg.algo.algorithm}: {self.plan.n_workers} workers ({self.comm.size} ranks x "
                      f"{r.workers_per_rank}), {self.plan.total_steps} steps, {self.plan.steps_per_epoch}/epoch, "
                      f"device {self.device}")
        self._t_start = self.meters.start_clock()  # wall_s counts the earlier segments' seconds too
        row = self.evaluate(0) if r.eval_on_start and self.step == 0 else None
        if self.step == 0:
            self.save()
        pending, t_log, s_log = None, time.time(), self.step
        t_first, s_first = t_log, s_log  # this segment's start, for the time left
        total = self.plan.total_steps
        while self.step < total:
            pending = self.train_step(self.step, pending)
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
                if pending is not None:
                    pending.wait()
                    pending = None
                row = self.evaluate(self.step)
            if self.checkpoint_due() or self.stop_signal:
                if pending is not None:
                    pending.wait()
                    pending = None
                self.checkpoint_now()
            if self.stop_signal:
                raise Preempted(self.step, self.stop_signal)
        return row

    def checkpoint_now(self) -> None:
        if self.stop is not None:
            self.stop.checkpointing = True
        try:
            self.save()
        finally:
            if self.stop is not None:
                self.stop.checkpointing = False

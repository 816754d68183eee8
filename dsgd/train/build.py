"""From settings to parts: step counts, learning rate, schedule. Checks consistency first."""
from __future__ import annotations

import math
from dataclasses import dataclass

from dsgd.config import Config, ConfigError
from dsgd.local_rank import DEVICE_PATTERN
from dsgd.schedules import QSR, Gossip, LocalSGD, LRSchedule, ParallelSGD, PostLocalSGD


@dataclass(frozen=True)
class Plan:
    """Sizes of a run, derived once."""

    n_workers: int
    steps_per_epoch: int
    total_steps: int

    def epoch_to_step(self, epochs: float) -> int:
        return int(round(epochs * self.steps_per_epoch))


def check(cfg: Config, world_size: int) -> None:
    """Refuse inconsistent settings with one line, before any training starts."""
    r, o, a = cfg.run, cfg.optim, cfg.algo
    n = world_size * r.workers_per_rank
    if r.workers_per_rank < 1:
        raise ConfigError(f"workers-per-rank must be >= 1, got {r.workers_per_rank}")
    if r.batch_size < 1:
        raise ConfigError(f"batch-size must be >= 1, got {r.batch_size}")
    if r.total_batch_size and r.total_batch_size != n * r.batch_size:
        raise ConfigError(f"total-batch-size {r.total_batch_size} != workers {n} x local batch {r.batch_size} "
                          f"= {n * r.batch_size}")
    if r.physical_batch_size < 0 or (r.physical_batch_size and r.batch_size % r.physical_batch_size):
        raise ConfigError(f"physical-batch-size {r.physical_batch_size} must divide batch-size {r.batch_size}")
    if r.epochs <= 0:
        raise ConfigError(f"epochs must be > 0, got {r.epochs}")
    if o.lr <= 0:
        raise ConfigError(f"lr must be > 0, got {o.lr}")
    if o.start_lr < 0 or o.weight_decay < 0 or not 0 <= o.momentum < 1:
        raise ConfigError("start-lr and weight-decay must be >= 0 and momentum in [0, 1)")
    if o.nesterov and o.momentum == 0:
        raise ConfigError("nesterov needs momentum > 0")
    if a.local_steps < 1:
        raise ConfigError(f"local-steps must be >= 1, got {a.local_steps}")
    if any(h < 1 for h in a.phase_local_steps):
        raise ConfigError(f"phase-local-steps must all be >= 1, got {list(a.phase_local_steps)}")
    if a.qsr_alpha < 0 or a.qsr_power <= 0:
        raise ConfigError("qsr-alpha must be >= 0 and qsr-power > 0")
    if a.global_every < 0 or r.eval_every < 1 or r.bn_batches < 0:
        raise ConfigError("global-every and bn-batches must be >= 0, eval-every >= 1")
    if not 0 <= cfg.data.label_noise < 1:
        raise ConfigError(f"label-noise must be in [0, 1), got {cfg.data.label_noise}")
    if cfg.data.steps_per_epoch < 0:
        raise ConfigError(f"steps-per-epoch must be >= 0, got {cfg.data.steps_per_epoch}")
    if not DEVICE_PATTERN.fullmatch(r.device):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {r.device!r}")
    if a.overlap and a.algorithm != "dsgd":
        raise ConfigError("overlap applies to dsgd only")


def plan(cfg: Config, world_size: int, train_size: int) -> Plan:
    n = world_size * cfg.run.workers_per_rank
    full = train_size // (n * cfg.run.batch_size)
    spe = cfg.data.steps_per_epoch or full
    if full < 1 and not cfg.data.replacement:
        raise ConfigError(f"total batch {n * cfg.run.batch_size} is larger than the training set ({train_size})")
    if cfg.data.steps_per_epoch > full and not cfg.data.replacement:
        raise ConfigError(f"steps-per-epoch {spe} needs {spe * n * cfg.run.batch_size} samples per epoch without "
                          f"replacement; the training set has {train_size}")
    return Plan(n, spe, max(1, math.ceil(cfg.run.epochs * spe)))


def lr_schedule(cfg: Config, p: Plan) -> LRSchedule:
    o = cfg.optim
    scale = p.n_workers if o.lr_scaling == "linear" else 1
    return LRSchedule(max_lr=o.lr * scale, total_steps=p.total_steps, warmup_steps=p.epoch_to_step(o.warmup_epochs),
                      start_lr=o.start_lr, decay=o.decay, gamma=o.gamma,
                      milestones=tuple(p.epoch_to_step(e) for e in o.milestones))


def _postlocal(cfg, p, lr):
    a = cfg.algo
    switches = tuple(p.epoch_to_step(e) for e in a.switch_epochs) or lr.decay_points[:1] or (0,)
    starts = tuple(sorted(set((0,) + tuple(s for s in switches if 0 < s < p.total_steps))))
    periods = tuple(a.phase_local_steps) or ((1,) + (a.local_steps,) * (len(starts) - 1)
                                             if len(starts) > 1 else (a.local_steps,))
    if len(periods) != len(starts):
        raise ConfigError(f"post-local SGD has {len(starts)} phases (switch points {list(starts[1:])}) "
                          f"but {len(periods)} phase-local-steps")
    return PostLocalSGD(p.n_workers, starts, periods, p.total_steps)


def _gossip(cfg, p, lr):
    import topologies
    try:
        topo = topologies.from_spec(cfg.algo.topology, p.n_workers)
    except topologies.TopologyError as e:
        raise ConfigError(f"topology: {e}") from None
    return Gossip(topo, cfg.algo.local_steps, cfg.algo.global_every, cfg.algo.order == "cta")


SCHEDULES = {
    "csgd": lambda cfg, p, lr: ParallelSGD(p.n_workers),
    "local": lambda cfg, p, lr: LocalSGD(p.n_workers, cfg.algo.local_steps, p.total_steps),
    "postlocal": _postlocal,
    "qsr": lambda cfg, p, lr: QSR(p.n_workers, cfg.algo.local_steps, cfg.algo.qsr_alpha, lr, p.total_steps,
                                  lr.warmup_steps, cfg.algo.qsr_power),
    "dsgd": _gossip,
}


def schedule(cfg: Config, p: Plan, lr: LRSchedule):
    return SCHEDULES[cfg.algo.algorithm](cfg, p, lr)

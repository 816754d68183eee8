"""From settings to parts: step counts, learning rate, the algorithm's rule. Checks consistency first.

Each algorithm is one entry of ALGORITHMS: how to build its rule, and which algorithm settings it
reads (a setting given to an algorithm that ignores it gets a one-line warning).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from dsgd.config import FLOAT32_MAX, Config, ConfigError
from dsgd.local_rank import DEVICE_PATTERN
from dsgd.compress import parse_codec
from dsgd.data.partition import parse_partition, split
from dsgd.models import TEXT_MODELS
from dsgd.rules.outer import OuterStep, Sparta, StreamingOuterStep, outer_optimizer
from dsgd.rules import (D2_EIGENVALUE_BOUND, Choco, CompressedAveraging, Diffusion, GradientTracking, OptimizerRule,
                        PowerSGDAveraging, PushSum, QuasiGlobalMomentum, Rule, smallest_eigenvalue)
from dsgd.schedules import QSR, Gossip, LocalSGD, LRSchedule, ParallelSGD, PostLocalSGD


MAX_STEPS = 2 ** 53  # steps and epochs convert through floats, exact up to here


@dataclass(frozen=True)
class Plan:
    """Sizes of a run, derived once."""

    n_workers: int
    steps_per_epoch: int
    total_steps: int

    def epoch_to_step(self, epochs: float) -> int:
        return int(round(epochs * self.steps_per_epoch))


def check(cfg: Config, world_size: int) -> None:
    """Refuse settings that contradict each other with one line, before any training starts.

    Each setting alone is checked where it is defined (dsgd.config); here only combinations.
    """
    r, o, a = cfg.run, cfg.optim, cfg.algo
    n = world_size * r.workers_per_rank
    if r.total_batch_size and r.total_batch_size != n * r.batch_size:
        raise ConfigError(f"total-batch-size {r.total_batch_size} != workers {n} x local batch {r.batch_size} "
                          f"= {n * r.batch_size}")
    if r.physical_batch_size and r.batch_size % r.physical_batch_size:
        raise ConfigError(f"physical-batch-size {r.physical_batch_size} must divide batch-size {r.batch_size}")
    if r.straggler_rank >= world_size:
        raise ConfigError(f"--straggler-rank {r.straggler_rank} is not a rank of this job (ranks 0..{world_size - 1})")
    if r.elastic and r.backend != "mpi":
        raise ConfigError(f"--elastic needs --backend mpi (MPI's fault-tolerant communicators); --backend "
                          f"{r.backend} cannot survive a lost rank")
    if o.nesterov and o.momentum == 0:
        raise ConfigError("nesterov needs momentum > 0")
    if cfg.model.norm == "bn" and cfg.model.model not in TEXT_MODELS and min(r.batch_size, r.physical_batch_size or r.batch_size) < 2:
        which = "physical-batch-size" if r.physical_batch_size == 1 else "batch-size"
        raise ConfigError(f"--{which} 1 with --norm bn: BatchNorm normalizes over a batch and needs at least 2 "
                          f"samples; use --norm gn or none, or a larger batch")
    if not DEVICE_PATTERN.fullmatch(r.device):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {r.device!r}")
    ALGORITHMS[a.algorithm].check(cfg)


def ignored_settings(cfg: Config, given: set[str]) -> list[str]:
    """Warnings for algorithm settings the user gave that the chosen algorithm does not read."""
    algo = ALGORITHMS[cfg.algo.algorithm]
    return [f"--{name.replace('_', '-')} is ignored by --algorithm {cfg.algo.algorithm}"
            for name in sorted(given & ALGORITHM_SETTINGS) if name not in algo.reads]


def misplaced_outer_settings(cfg: Config, given: set[str]) -> None:
    """An outer-step setting given to an algorithm without that step has no meaning: refused in one line."""
    algo = ALGORITHMS[cfg.algo.algorithm]
    for name in sorted(given & OUTER):
        if name not in algo.reads:
            users = [a for a, spec in ALGORITHMS.items() if name in spec.reads]
            raise ConfigError(f"--{name.replace('_', '-')} applies to {', '.join(users)}; --algorithm "
                              f"{cfg.algo.algorithm} has no outer step")


def plan(cfg: Config, world_size: int, train_size: int) -> Plan:
    n = world_size * cfg.run.workers_per_rank
    full = train_size // (n * cfg.run.batch_size)
    spe = cfg.data.steps_per_epoch or full
    if cfg.run.batch_size > train_size:  # with replacement too: a batch of copies that only exhausts memory
        raise ConfigError(f"batch-size {cfg.run.batch_size} is larger than the training set ({train_size})")
    if full < 1 and not cfg.data.replacement:
        raise ConfigError(f"total batch {n * cfg.run.batch_size} is larger than the training set ({train_size})")
    if cfg.data.steps_per_epoch > full and not cfg.data.replacement:
        raise ConfigError(f"steps-per-epoch {spe} needs {spe * n * cfg.run.batch_size} samples per epoch without "
                          f"replacement; the training set has {train_size}")
    total = max(1, math.ceil(cfg.run.epochs * spe))
    if total > MAX_STEPS:
        raise ConfigError(f"--epochs {cfg.run.epochs:g} of {spe} steps is {total:.3g} steps; a run has at most 2^53")
    return Plan(n, spe, total)


def check_data(cfg: Config, data) -> None:
    """Settings that only image classification has: refused for a text dataset in one line."""
    if getattr(data, "task", "classification") == "classification":
        return
    d = cfg.data
    for given, name in ((d.augment, "--augment"), (d.label_noise > 0, "--label-noise"),
                        (parse_partition(d.partition).name != "iid", f"--partition {d.partition}")):
        if given:
            raise ConfigError(f"{name} applies to labelled images; --dataset {d.dataset} is text (next-token "
                              f"prediction): leave it out")


def check_model(cfg: Config, model) -> None:
    """Settings that need the model's size: a top-k or random-k count it does not have, more
    streaming fragments than it has tensors."""
    count = getattr(parse_codec(cfg.compress.compress), "count", 0)
    size = sum(p.numel() for p in model.parameters())
    tensors = len(list(model.parameters()))
    if "fragments" in ALGORITHMS[cfg.algo.algorithm].reads and cfg.outer.fragments > tensors:
        raise ConfigError(f"--fragments {cfg.outer.fragments} is more than the {tensors} parameter tensors of --model "
                          f"{cfg.model.model} (a fragment is one or more whole layers)")
    if count > size:
        raise ConfigError(f"--compress {cfg.compress.compress}: count {count} is more than the {size} parameters "
                          f"of --model {cfg.model.model}")


def partition(cfg: Config, n_workers: int, train_set) -> list | None:
    """Each worker's fixed part of the training set (index arrays), or None for --partition iid.

    Steps per epoch stay floor(train size / total batch) either way: the mean part size over
    the local batch, so an epoch is one pass over the data in total.
    """
    spec = parse_partition(cfg.data.partition)
    if spec.name == "iid":
        return None
    try:
        return split(train_set.labels.cpu().numpy(), n_workers, spec, cfg.run.seed, train_set.num_classes)
    except ValueError as e:
        raise ConfigError(f"--partition {cfg.data.partition}: {e}") from None


def heterogeneity_metrics(cfg: Config) -> bool:
    """Whether evaluations also log zeta2 and the workers' own test accuracies (default: off for iid)."""
    on = cfg.run.heterogeneity_metrics
    return parse_partition(cfg.data.partition).name != "iid" if on is None else on


def lr_schedule(cfg: Config, p: Plan) -> LRSchedule:
    o = cfg.optim
    scale = p.n_workers if o.lr_scaling == "linear" else 1
    milestones = tuple(p.epoch_to_step(e) for e in o.milestones)
    _check_peak_lr(cfg, scale, sum(1 for m in milestones if m < p.total_steps))
    return LRSchedule(max_lr=o.lr * scale, total_steps=p.total_steps, warmup_steps=p.epoch_to_step(o.warmup_epochs),
                      start_lr=o.start_lr, decay=o.decay, gamma=o.gamma, milestones=milestones)


def _check_peak_lr(cfg: Config, scale: int, milestones_reached: int) -> None:
    """The highest learning rate of the schedule must fit a float32 (each flag alone is checked in dsgd.config;
    linear scaling and a --gamma above 1 can still carry it past)."""
    o = cfg.optim
    grows = o.decay == "step" and o.gamma > 1 and milestones_reached
    try:
        peak = o.lr * scale * (o.gamma ** milestones_reached if grows else 1)
    except OverflowError:
        peak = math.inf
    if peak > FLOAT32_MAX:
        plural = "s" * (milestones_reached > 1)
        how = (f" x {scale} workers (--lr-scaling linear)" if scale > 1 else "") + \
              (f" x --gamma {o.gamma:g} at {milestones_reached} milestone{plural}" if grows else "")
        raise ConfigError(f"the learning rate would reach {peak:.4g} (--lr {o.lr:g}{how}), more than a float32 "
                          f"holds (at most {FLOAT32_MAX:.4g})")


# -- schedules -------------------------------------------------------------------------------
def _postlocal(cfg, p, lr):
    a, pl = cfg.algo, cfg.postlocal
    switches = tuple(p.epoch_to_step(e) for e in pl.switch_epochs) or lr.decay_points[:1] or (0,)
    starts = tuple(sorted(set((0,) + tuple(s for s in switches if 0 < s < p.total_steps))))
    periods = tuple(pl.phase_local_steps) or ((1,) + (a.local_steps,) * (len(starts) - 1)
                                              if len(starts) > 1 else (a.local_steps,))
    if len(periods) != len(starts):
        raise ConfigError(f"post-local SGD has {len(starts)} phases (switch points {list(starts[1:])}) "
                          f"but {len(periods)} phase-local-steps")
    return PostLocalSGD(p.n_workers, starts, periods, p.total_steps)


def topology(cfg, n: int):
    import topologies
    try:
        return topologies.from_spec(cfg.gossip.topology, n)
    except topologies.TopologyError as e:
        raise ConfigError(f"topology: {e}") from None


def _gossip(cfg, p, lr, stochastic=("doubly",)):
    topo = topology(cfg, p.n_workers)
    if topo.stochastic not in stochastic:
        raise ConfigError(f"topology {topo.name} is only column-stochastic (a push graph): use --algorithm sgp, "
                          f"which de-biases it")
    g = cfg.gossip
    return Gossip(topo, cfg.algo.local_steps, g.global_every, g.order == "cta")


def _d2(cfg, p, lr):
    schedule = _gossip(cfg, p, lr)
    topo = schedule.topology
    for t in range(min(topo.period, 64)):
        low = smallest_eigenvalue(topo.W(t))
        if low <= D2_EIGENVALUE_BOUND + 1e-12:
            raise ConfigError(f"d2 needs every W's eigenvalues above -1/3, but {topo.name} on {p.n_workers} workers "
                              f"has {low:.4g} (W({t})): use --algorithm exact-diffusion, which mixes with (I + W)/2")
    return Diffusion(schedule, exact=False)


CHOCO_MAX_PERIOD = 64  # one accumulator (a model-sized buffer) per matrix of the period


def _choco(cfg, p, lr):
    if cfg.gossip.global_every:
        raise ConfigError("--global-every is not supported with choco (an exact average would need every "
                          "accumulator to follow it)")
    schedule = _gossip(cfg, p, lr)
    period = schedule.topology.period
    if period > CHOCO_MAX_PERIOD:
        raise ConfigError(f"choco keeps one accumulator per matrix of the graph's period; {schedule.topology.name} "
                          f"has {period} (at most {CHOCO_MAX_PERIOD}): use a static graph or one-peer-exponential")
    return Choco(schedule, parse_codec(cfg.compress.compress), cfg.compress.consensus_step, cfg.run.seed)


# -- the registry ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Algorithm:
    make: Callable[[Config, Plan, LRSchedule], Rule]
    reads: frozenset        # algorithm settings it uses
    own_update: bool = False  # updates by its own recursion (plain SGD steps), not the torch optimizer
    momentum: bool = False  # with own_update: reads --momentum / --nesterov itself
    push: bool = False      # works on column-stochastic push graphs (mixing is not an average)

    def check(self, cfg: Config) -> None:
        name, o = cfg.algo.algorithm, cfg.optim
        compressing = cfg.compress.compress != "none"
        if compressing and "compress" not in self.reads:
            raise ConfigError(f"--compress applies to choco (compressed gossip), to csgd, local, postlocal, qsr "
                              f"(error-feedback averaging) and to diloco, gossip-diloco (compressed outer "
                              f"gradients); --algorithm {name} mixes dense")
        if compressing and getattr(parse_codec(cfg.compress.compress), "low_rank", False) and name != "csgd":
            raise ConfigError(f"--compress {cfg.compress.compress} compresses gradients of C-SGD: use it with "
                              f"--algorithm csgd, not {name}")
        if compressing and cfg.algo.mix_optimizer_state:
            raise ConfigError("--mix-optimizer-state true is not supported with --compress (optimizer state "
                              "would travel uncompressed beside compressed parameters)")
        if cfg.gossip.overlap and "overlap" not in self.reads:
            raise ConfigError("overlap applies to dsgd only")
        if self.push and cfg.model.norm == "bn" and cfg.algo.mix_buffers:
            raise ConfigError(f"{name} would mix BatchNorm statistics over a push graph without de-biasing them: "
                              f"use --norm gn or none, or --mix-buffers false")
        if not self.own_update:
            return
        if o.optimizer != "sgd":
            raise ConfigError(f"--algorithm {name} is its own update rule on SGD steps; --optimizer {o.optimizer} "
                              f"is not supported with it")
        if o.momentum > 0 and not self.momentum:
            raise ConfigError(f"--algorithm {name} is defined without momentum: use --momentum 0 (or --algorithm "
                              f"qgm, quasi-global momentum, for momentum on heterogeneous data)")


MIXING = {"mix_buffers", "mix_optimizer_state"}
OUTER_STEP = {"outer_optimizer", "outer_lr", "outer_momentum"}
OUTER = OUTER_STEP | {"fragments", "fragment_delay", "fragment_alpha", "sparta_fraction"}
AVERAGING = {"compress"}  # error-feedback compressed averaging (with --compress)
GOSSIP = {"local_steps", "topology", "global_every"}
ALGORITHM_SETTINGS = frozenset({"local_steps", "mix_buffers", "mix_optimizer_state", "topology", "global_every",
                                "order", "overlap", "switch_epochs", "phase_local_steps", "qsr_alpha", "qsr_power",
                                "qgm_buffer_factor", "compress", "consensus_step"} | OUTER)
ALGORITHMS = {
    "csgd": Algorithm(lambda cfg, p, lr: _averaging(cfg, ParallelSGD(p.n_workers)), frozenset(AVERAGING)),
    "local": Algorithm(lambda cfg, p, lr: _averaging(cfg, LocalSGD(p.n_workers, cfg.algo.local_steps, p.total_steps)),
                       frozenset({"local_steps"} | MIXING | AVERAGING)),
    "postlocal": Algorithm(lambda cfg, p, lr: _averaging(cfg, _postlocal(cfg, p, lr)),
                           frozenset({"local_steps", "switch_epochs", "phase_local_steps"} | MIXING | AVERAGING)),
    "qsr": Algorithm(lambda cfg, p, lr: _averaging(cfg, QSR(p.n_workers, cfg.algo.local_steps, cfg.qsr.qsr_alpha, lr,
                                                            p.total_steps, lr.warmup_steps, cfg.qsr.qsr_power)),
                     frozenset({"local_steps", "qsr_alpha", "qsr_power"} | MIXING | AVERAGING)),
    "dsgd": Algorithm(lambda cfg, p, lr: OptimizerRule(_gossip(cfg, p, lr), cfg.gossip.overlap),
                      frozenset(GOSSIP | {"order", "overlap"} | MIXING)),
    "gradient-tracking": Algorithm(lambda cfg, p, lr: GradientTracking(_gossip(cfg, p, lr)),
                                   frozenset(GOSSIP | {"mix_buffers"}), own_update=True),
    "d2": Algorithm(_d2, frozenset(GOSSIP | {"mix_buffers"}), own_update=True),
    "exact-diffusion": Algorithm(lambda cfg, p, lr: Diffusion(_gossip(cfg, p, lr), exact=True),
                                 frozenset(GOSSIP | {"mix_buffers"}), own_update=True),
    "qgm": Algorithm(lambda cfg, p, lr: QuasiGlobalMomentum(_gossip(cfg, p, lr), cfg.optim.momentum,
                                                            cfg.qgm.qgm_buffer_factor, cfg.optim.nesterov),
                     frozenset(GOSSIP | {"mix_buffers", "qgm_buffer_factor"}), own_update=True, momentum=True),
    "sgp": Algorithm(lambda cfg, p, lr: PushSum(_gossip(cfg, p, lr, stochastic=("doubly", "column"))),
                     frozenset(GOSSIP | {"mix_buffers"}), own_update=True, push=True),
    "choco": Algorithm(_choco, frozenset(GOSSIP | {"mix_buffers", "compress", "consensus_step"}), own_update=True),
    "diloco": Algorithm(lambda cfg, p, lr: _outer(cfg, LocalSGD(p.n_workers, cfg.algo.local_steps, p.total_steps)),
                        frozenset({"local_steps", "mix_buffers", "compress"} | OUTER_STEP)),
    "gossip-diloco": Algorithm(lambda cfg, p, lr: _outer(cfg, Gossip(topology(cfg, p.n_workers), cfg.algo.local_steps)),
                               frozenset({"local_steps", "topology", "mix_buffers", "compress"} | OUTER_STEP)),
    "streaming-diloco": Algorithm(lambda cfg, p, lr: _streaming(cfg, p),
                                  frozenset({"local_steps", "mix_buffers", "fragments", "fragment_delay",
                                             "fragment_alpha"} | OUTER_STEP)),
    "sparta": Algorithm(lambda cfg, p, lr: Sparta(LocalSGD(p.n_workers, 1, p.total_steps), cfg.outer.sparta_fraction,
                                                  cfg.run.seed),
                        frozenset({"mix_buffers", "sparta_fraction"})),
}


def _outer(cfg: Config, schedule) -> Rule:
    """DiLoCo over the schedule's W: the average every H steps, or a graph's W(round)."""
    o = cfg.outer
    codec = None if cfg.compress.compress == "none" else parse_codec(cfg.compress.compress)
    return OuterStep(schedule, outer_optimizer(o.outer_optimizer, o.outer_lr, o.outer_momentum), codec, cfg.run.seed)


def _streaming(cfg: Config, p: Plan) -> Rule:
    o, H = cfg.outer, cfg.algo.local_steps
    if o.fragment_delay >= H:
        raise ConfigError(f"--fragment-delay {o.fragment_delay} must be below --local-steps {H}: a fragment's exchange "
                          f"lands before its next round starts")
    return StreamingOuterStep(p.n_workers, H, o.fragments, o.fragment_delay, o.fragment_alpha, None,
                              outer_optimizer(o.outer_optimizer, o.outer_lr, o.outer_momentum))


def _averaging(cfg: Config, schedule) -> Rule:
    """The optimizer rule over an averaging schedule; error-feedback compressed when --compress is set."""
    if cfg.compress.compress == "none":
        return OptimizerRule(schedule)
    codec = parse_codec(cfg.compress.compress)
    if getattr(codec, "low_rank", False):
        return PowerSGDAveraging(schedule, codec.rank, cfg.run.seed)
    return CompressedAveraging(schedule, codec, cfg.run.seed)


def rule(cfg: Config, p: Plan, lr: LRSchedule) -> Rule:
    return ALGORITHMS[cfg.algo.algorithm].make(cfg, p, lr)


def uses_topology(cfg: Config) -> bool:
    return "topology" in ALGORITHMS[cfg.algo.algorithm].reads


def check_registries() -> None:
    """The command line's choices (dsgd.config, kept free of torch for a fast --help) name exactly what
    the registries hold; a registry entry added without its name there fails here, at import."""
    from dsgd import config
    from dsgd.data.datasets import DATASETS
    from dsgd.models import MODELS
    for what, listed, held in (("algorithms", config.ALGORITHMS, ALGORITHMS), ("datasets", config.DATASETS, DATASETS),
                               ("models", config.MODELS, {**MODELS, **TEXT_MODELS})):
        if tuple(listed) != tuple(held):
            raise ImportError(f"dsgd.config lists {what} {list(listed)} but the registry holds {list(held)}")


check_registries()

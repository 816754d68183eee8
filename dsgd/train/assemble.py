"""From settings to the parts of a run: data, plan, partitions, schedule, rule, model, workers, engine.

Everything here is built once, before the first step, and is the same whichever loop drives it.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from dsgd.config import Config, ConfigError
from dsgd.data.augment import Augmentation, augmentation_for
from dsgd.data.batches import local_batch
from dsgd.data.datasets import TrainingData, load_dataset
from dsgd.data.errors import DatasetError
from dsgd.data.samplers import Sampler, make_sampler
from dsgd.models import build_model_for
from dsgd.rules import Rule, WorkerEngine
from dsgd.schedules import LRSchedule
from dsgd.tasks import Classification, task_for
from dsgd.train import build
from dsgd.train.vectorized import make_workers
from dsgd.train.workers import WorkerSet


def load_splits(cfg: Config) -> tuple[TrainingData, TrainingData]:
    """(train, test) of --dataset; text datasets cut their samples at --context tokens."""
    d = cfg.data
    if d.dataset not in TEXT_DATASETS:
        return load_dataset(d.dataset, d.data_dir, train=True), load_dataset(d.dataset, d.data_dir, train=False)
    try:
        return (load_dataset(d.dataset, d.data_dir, train=True, context=d.context),
                load_dataset(d.dataset, d.data_dir, train=False, context=d.context))
    except DatasetError:
        raise
    except ValueError as e:  # a context the text cannot hold once
        raise ConfigError(f"--context {d.context}: {e}") from None


TEXT_DATASETS = ("fortunes",)


@dataclass
class Parts:
    """What one process trains with. `batch(step)(worker)` is the worker's training batch at `step`."""

    train_set: TrainingData
    test_set: TrainingData
    task: Classification
    plan: build.Plan
    parts: Optional[list]      # each worker's sample indices; None: iid
    lr: LRSchedule
    rule: Rule
    sampler: Sampler
    augment: object            # False, or an Augmentation
    workers: WorkerSet
    eval_model: torch.nn.Module
    engine: WorkerEngine
    decay: list                # weight decay per parameter tensor

    def batch(self, step: int, cfg: Config, device) -> Callable[[int], tuple]:
        return lambda worker: local_batch(self.train_set, self.sampler, worker, step, cfg.run.seed, self.augment,
                                          cfg.data.label_noise, device)


def model(cfg: Config, data: TrainingData) -> torch.nn.Module:
    """The architecture --model names, shaped for the data, with weights from the seed (the same on every rank)."""
    torch.manual_seed(cfg.run.seed)
    try:
        return build_model_for(cfg.model.model, data, norm=cfg.model.norm,
                               n_groups=cfg.model.n_groups if cfg.model.norm == "gn" else None)
    except ValueError as e:  # a setting the model's shape refuses (--n-groups), or a model of the other kind
        reason = str(e).removeprefix(f"{cfg.model.model}: ")
        if reason.startswith("--model"):
            raise ConfigError(reason) from None
        raise ConfigError(f"--n-groups {cfg.model.n_groups} does not fit --model {cfg.model.model}: {reason}") \
            from None


def augmentation(cfg: Config):
    """Unset: the dataset's usual choice; true: random crop (padding 4) and horizontal flip."""
    aug = cfg.data.augment
    if aug is None:
        return augmentation_for(cfg.data.dataset)
    return Augmentation(crop=True, flip=True, padding=4) if aug else False


def _on_graph(cfg: Config, topology: str | None) -> Config:
    """CFG with the graph an elastic run's last change left (TOPOLOGY), or CFG itself (None)."""
    if topology is None or topology == "average":
        return cfg
    cfg = copy.deepcopy(cfg)
    cfg.gossip.topology = topology
    return cfg


def decay_per_tensor(cfg: Config, net: torch.nn.Module) -> list[float]:
    """Weight decay of each parameter tensor, for rules that update by their own recursion."""
    o = cfg.optim
    return [0.0 if o.no_decay_norm_bias and p.ndim <= 1 else o.weight_decay for p in net.parameters()]


def assemble(cfg: Config, mixer, device: torch.device, history=None) -> Parts:
    """HISTORY (dsgd.train.elastic.History, or None): an elastic run's changes of membership, which a
    resume continues: its steps per epoch stay the start's and its graph is the last change's (the
    caller then rebuilds the sampler from the history)."""
    comm, r = mixer.comm, cfg.run
    train_set, test_set = load_splits(cfg)
    task = task_for(train_set)
    build.check_data(cfg, train_set)
    plan = build.plan(cfg, comm.size, len(train_set))
    if history is not None:
        spe = history.steps_per_epoch
        plan = build.Plan(plan.n_workers, spe, max(1, math.ceil(cfg.run.epochs * spe)))
    parts = build.partition(cfg, plan.n_workers, train_set)
    lr = build.lr_schedule(cfg, plan)
    rule = build.rule(_on_graph(cfg, history.topology if history is not None else None), plan, lr)
    net = model(cfg, train_set)
    build.check_model(cfg, net)
    K = r.workers_per_rank
    sampler = make_sampler(cfg.data.replacement, len(train_set), plan.n_workers, r.batch_size, r.seed,
                           plan.steps_per_epoch, parts=parts)
    aug = augmentation(cfg)
    probe = local_batch(train_set, sampler, comm.rank * K, 0, r.seed, aug, cfg.data.label_noise, device)
    workers = make_workers(net, K, comm.rank * K, cfg.optim, device, r.vectorize, probe, task)
    decay = decay_per_tensor(cfg, net)
    engine = WorkerEngine(mixer, workers, lr, cfg.algo.mix_buffers, cfg.algo.mix_optimizer_state, weight_decay=decay)
    rule.attach(engine)
    return Parts(train_set, test_set, task, plan, parts, lr, rule, sampler, aug, workers,
                 copy.deepcopy(net).to(device), engine, decay)

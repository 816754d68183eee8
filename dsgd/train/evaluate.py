"""Evaluate the averaged model x_bar, and measure how far the workers are from it."""
from __future__ import annotations

import torch

from dsgd.data.batches import eval_batches, shard_range
from dsgd.data.rng import derive_seed
from dsgd.data.samplers import WithReplacementSampler
from dsgd.tasks import Classification


def has_batchnorm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def consensus_distance(comm, params, average, n_workers: int) -> float:
    """(1/n) sum_i ||x_i - x_bar||^2 over all workers."""
    local = 0.0
    for b, a in zip(params, average):
        local += float(((b.double() - a.double()) ** 2).sum())
    return comm.allreduce_floats([local])[0] / n_workers


def load_average_(model: torch.nn.Module, layout, average) -> None:
    rows = [a.unsqueeze(0) for a in average]
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.copy_(layout.view(rows, 0, i))


@torch.no_grad()
def reestimate_batchnorm_(model, train_set, batches: int, batch_size: int, seed: int, step: int, device) -> None:
    """Running statistics of the averaged model from `batches` training batches in train mode.

    Averaging parameters does not give meaningful averaged statistics, so they are recomputed
    (cumulative average over the batches). Every rank draws the same batches.
    """
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    sampler = WithReplacementSampler(len(train_set), 1, batch_size, derive_seed(seed, "bn", step))
    model.train()
    for j in range(batches):
        model(train_set.take(sampler.indices(0, j), device)[0])


@torch.no_grad()
def evaluate(model, test_set, comm, device, samples: int = 0, batch_size: int = 1000,
             task=None) -> tuple[float, float]:
    """Test loss and accuracy (per item: sample, or token) on the first `samples` test samples (0: all);
    each rank takes a shard."""
    task = task if task is not None else Classification()
    model.eval()
    loss_sum, correct, items = 0.0, 0.0, 0.0
    total = min(samples, len(test_set)) if samples > 0 else len(test_set)
    shard = shard_range(total, comm.rank, comm.size)
    for x, y in eval_batches(test_set, batch_size, device=device, items=shard):
        out = model(x)
        loss_sum += float(task.loss_sum(out, y))
        correct += float(task.hits(out, y))
        items += task.count(y)
    loss_sum, correct, items = comm.allreduce_floats([loss_sum, correct, items])
    return loss_sum / items, correct / items

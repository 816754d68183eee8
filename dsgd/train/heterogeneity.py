"""What heterogeneous data does to training, measured at each evaluation.

zeta2 = (1/n) sum_i ||grad f_i(x_bar) - grad f(x_bar)||^2 with f = (1/n) sum_i f_i: how far the
workers' own gradients at the averaged model are from their mean, each f_i estimated on a probe
batch of worker i's part that stays the same for the whole run (so rows are comparable). Beside
it, each worker's own model is scored on the evaluation subset of the test set: their mean and
minimum against the averaged model's test accuracy show what mixing buys.
"""
from __future__ import annotations

import torch

from dsgd.data.batches import eval_batches
from dsgd.data.datasets import TrainingData
from dsgd.data.rng import generator
from dsgd.tasks import Classification


def probe_indices(part: torch.Tensor, samples: int, seed: int, worker: int) -> torch.Tensor:
    """The fixed probe samples of `worker`: the first `samples` of a seeded shuffle of its part
    (all of it when the part is smaller)."""
    g = generator(seed, "probe", worker)
    return part[torch.randperm(len(part), generator=g)[:samples]]


def flat_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, task=None) -> torch.Tensor:
    """Gradient of the task's mean loss (cross-entropy by default) on (x, y) at the model's parameters,
    flattened, float64.

    The model is in eval mode (BatchNorm uses the statistics it holds) and its .grad is untouched.
    """
    model.eval()
    params = list(model.parameters())
    loss = (task if task is not None else Classification()).loss(model(x), y)
    grads = torch.autograd.grad(loss, params)
    return torch.cat([g.reshape(-1) for g in grads]).to(torch.float64)


def squared_deviation(grads: torch.Tensor, mean: torch.Tensor) -> float:
    """sum_k ||grads[k] - mean||^2 in float64: this rank's share of n * zeta2."""
    return float(((grads.to(torch.float64) - mean.to(torch.float64)) ** 2).sum())


class Heterogeneity:
    """Probe batches of one rank's workers, built once, and the metrics computed from them.

    Args:
        train_set: the training split.
        parts: each global worker's sample indices, or None (iid: every worker's part is the
            whole set, and zeta2 then measures only the probe batches' sampling noise).
        workers: this rank's global worker ids.
        samples: probe batch size per worker (--probe-samples).
        seed: run seed; the probes come from generator(seed, "probe", worker).
    """

    def __init__(self, train_set: TrainingData, parts, workers: range, samples: int, seed: int, device,
                 task=None) -> None:
        everything = torch.arange(len(train_set), dtype=torch.int64)
        self.task = task if task is not None else Classification()
        self.probes = []
        for w in workers:
            part = everything if parts is None else torch.as_tensor(parts[w], dtype=torch.int64)
            self.probes.append(train_set.take(probe_indices(part, samples, seed, w), device))

    def zeta2(self, avg_model: torch.nn.Module, mixer) -> float:
        """zeta2 at the parameters `avg_model` holds (x_bar), over all workers of all ranks."""
        grads = torch.stack([flat_gradient(avg_model, x, y, self.task) for x, y in self.probes])
        mean = mixer.average([grads])[0]
        return mixer.comm.allreduce_floats([squared_deviation(grads, mean)])[0] / mixer.n_workers

    def measure(self, avg_model, models, test_set, mixer, first_worker: int, device, eval_samples: int) -> dict:
        """The metrics row entries: zeta2, local_test_acc_mean, local_test_acc_min.

        A worker's model lives on one rank only, so that rank scores it on the whole evaluation
        subset (the first `eval_samples` test items, 0: all). Counts, not ratios, are summed, so
        min <= mean holds exactly.
        """
        total = min(eval_samples, len(test_set)) if eval_samples > 0 else len(test_set)
        counts = [0.0] * mixer.n_workers
        items = 0
        for k, model in enumerate(models):
            hits, items = correct_predictions(model, test_set, device, total, task=self.task)
            counts[first_worker + k] = float(hits)
        counts = mixer.comm.allreduce_floats(counts)  # items: the same on every rank (the same test samples)
        return {"zeta2": self.zeta2(avg_model, mixer),
                "local_test_acc_mean": sum(counts) / (len(counts) * items),
                "local_test_acc_min": min(counts) / items}


@torch.no_grad()
def correct_predictions(model: torch.nn.Module, test_set: TrainingData, device, total: int,
                        batch_size: int = 1000, task=None) -> tuple[int, int]:
    """(hits, items): how many of the items (samples, or tokens) of the first `total` test samples
    `model` (in eval mode) predicts right, and how many there are."""
    task = task if task is not None else Classification()
    model.eval()
    hits, items = 0, 0
    for x, y in eval_batches(test_set, batch_size, device=device, items=range(total)):
        hits += int(task.hits(model(x), y))
        items += task.count(y)
    return hits, items

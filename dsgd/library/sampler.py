"""A `torch.utils.data` sampler that gives one worker its part of a dataset, under every partition
dsgd has: iid (a disjoint slice of one shared shuffle per epoch, as DistributedSampler does),
dirichlet:alpha=A, shards:k=K, sorted (fixed parts, the same as the command line's --partition)."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from dsgd.data.partition import parse_partition, split


class PartitionSampler(torch.utils.data.Sampler):
    """Indices of worker WORKER of N_WORKERS.

    Args:
        labels: every sample's class (needed by dirichlet, shards and sorted; for iid only its length counts).
        n_workers, worker: the job's workers (`world.n_workers`) and this one (`world.first_worker + k`).
        partition: "iid", "dirichlet:alpha=0.1", "shards:k=2", "sorted".
        seed: the same on every worker: the parts (and iid's shuffles) are then the same everywhere.
        shuffle: reshuffle this worker's part each epoch (`set_epoch`), else ascending indices.
    """

    def __init__(self, labels: Sequence[int], n_workers: int, worker: int, partition: str = "iid", seed: int = 0,
                 shuffle: bool = True):
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"n_workers must be an integer >= 1, got {n_workers!r}")
        if not 0 <= worker < n_workers:
            raise ValueError(f"worker must be in 0..{n_workers - 1}, got {worker}")
        self.labels = np.asarray(labels)
        self.n_workers, self.worker, self.seed, self.shuffle = n_workers, worker, seed, shuffle
        self.spec = parse_partition(partition)
        self.epoch = 0
        if self.spec.name == "iid":
            self.part = None
            if len(self.labels) < n_workers:
                raise ValueError(f"{len(self.labels)} samples cannot give each of {n_workers} workers one")
        else:
            classes = int(self.labels.max()) + 1
            self.part = split(self.labels, n_workers, self.spec, seed, classes)[worker]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.part is None:
            return len(self.labels) // self.n_workers
        return len(self.part)

    def __iter__(self) -> Iterator[int]:
        draw = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.part is None:  # one shuffle shared by every worker, cut into disjoint slices
            order = torch.randperm(len(self.labels), generator=draw) if self.shuffle else torch.arange(len(self.labels))
            mine = order[self.worker * len(self): (self.worker + 1) * len(self)]
            return iter(mine.tolist())
        if not self.shuffle:
            return iter(self.part.tolist())
        draw.manual_seed(self.seed * 1_000_003 + self.epoch * 7919 + self.worker)
        return iter(self.part[torch.randperm(len(self.part), generator=draw).numpy()].tolist())

"""Which training samples each worker sees at each step (Gu et al. 2023, Algorithms 1 and 2),
or, with a fixed partition, which samples of its own part.

Every sampler answers `indices(worker, step)` as a pure function of (seed, worker,
step), so resuming needs only the step number and a worker's batches do not
depend on how workers are spread over processes.
"""
from __future__ import annotations

from typing import Protocol

import torch

from dsgd.data.rng import generator


class Sampler(Protocol):
    n_workers: int
    local_batch: int
    steps_per_epoch: int

    def indices(self, worker: int, step: int) -> torch.Tensor: ...


def _check_sizes(n_samples: int, n_workers: int, local_batch: int) -> None:
    for name, value in (("n_samples", n_samples), ("n_workers", n_workers),
                        ("local_batch", local_batch)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _check_query(worker: int, step: int, n_workers: int) -> None:
    if not 0 <= worker < n_workers:
        raise ValueError(f"worker must be in 0..{n_workers - 1}, got {worker}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")


class WithoutReplacementSampler:
    """Each epoch, one global shuffle split into disjoint contiguous shards, one per worker.

    Every worker derives the same permutation of 0..n_samples-1 from (seed, epoch),
    takes shard `worker` of length n_samples // n_workers, and walks it in local
    batches: in-epoch step s reads shard[s * local_batch : (s + 1) * local_batch].
    Gu et al. 2023, Algorithm 2.

    Args:
        n_samples: size of the training set.
        n_workers: number of workers n.
        local_batch: samples per worker per step, B_loc.
        seed: run seed.
        steps_per_epoch: steps before the next shuffle; defaults to, and may not
            exceed, n_samples // (n_workers * local_batch). Fixing it lets runs with
            different total batches count epochs the same way.

    Example:
        >>> s = WithoutReplacementSampler(100, n_workers=4, local_batch=5, seed=0)
        >>> s.steps_per_epoch, s.indices(worker=2, step=7).shape
        (5, torch.Size([5]))
    """

    def __init__(self, n_samples: int, n_workers: int, local_batch: int, seed: int,
                 steps_per_epoch: int | None = None) -> None:
        _check_sizes(n_samples, n_workers, local_batch)
        most = n_samples // (n_workers * local_batch)
        if most < 1:
            raise ValueError(f"{n_samples} samples cannot fill one step of {n_workers} workers x "
                             f"{local_batch} local batch without replacement")
        if steps_per_epoch is None:
            steps_per_epoch = most
        if not 1 <= steps_per_epoch <= most:
            raise ValueError(f"steps_per_epoch={steps_per_epoch} must be in 1..{most}: "
                             f"{n_samples} samples give at most {most} steps of {n_workers} "
                             f"workers x {local_batch} without replacement")
        self.n_samples, self.n_workers, self.local_batch = n_samples, n_workers, local_batch
        self.seed, self.steps_per_epoch = seed, steps_per_epoch
        self.shard_size = n_samples // n_workers
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.int64)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The global shuffle of `epoch`, identical on every worker (cached: do not modify)."""
        if epoch != self._epoch:  # steps arrive in order, so one cached epoch suffices
            g = generator(self.seed, "perm", epoch)
            self._perm = torch.randperm(self.n_samples, generator=g)
            self._epoch = epoch
        return self._perm

    def indices(self, worker: int, step: int) -> torch.Tensor:
        """Sample indices (int64, length local_batch) for `worker` at global `step`."""
        _check_query(worker, step, self.n_workers)
        epoch, s = divmod(step, self.steps_per_epoch)
        start = worker * self.shard_size + s * self.local_batch
        return self.permutation(epoch)[start:start + self.local_batch].clone()


class WithReplacementSampler:
    """Each worker draws each local batch independently and uniformly from the whole set.

    Draws come from generator(seed, "draw", worker, step): independent across
    workers and steps. Gu et al. 2023, Algorithm 1.

    Args:
        n_samples, n_workers, local_batch, seed: as for WithoutReplacementSampler.
        steps_per_epoch: only names the epoch length (for schedules and logs); it
            defaults to max(1, n_samples // (n_workers * local_batch)).

    Example:
        >>> s = WithReplacementSampler(100, n_workers=4, local_batch=5, seed=0)
        >>> bool((s.indices(1, 3) == s.indices(1, 3)).all())
        True
    """

    def __init__(self, n_samples: int, n_workers: int, local_batch: int, seed: int,
                 steps_per_epoch: int | None = None) -> None:
        _check_sizes(n_samples, n_workers, local_batch)
        if steps_per_epoch is None:
            steps_per_epoch = max(1, n_samples // (n_workers * local_batch))
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.n_samples, self.n_workers, self.local_batch = n_samples, n_workers, local_batch
        self.seed, self.steps_per_epoch = seed, steps_per_epoch

    def indices(self, worker: int, step: int) -> torch.Tensor:
        """Sample indices (int64, length local_batch) for `worker` at global `step`."""
        _check_query(worker, step, self.n_workers)
        g = generator(self.seed, "draw", worker, step)
        return torch.randint(self.n_samples, (self.local_batch,), generator=g)


class PartSampler:
    """Each worker samples only its own fixed part of the training set (a label-skewed partition).

    With replacement, a local batch is drawn uniformly from the part with
    generator(seed, "draw", worker, step). Without, each worker walks its own stream of
    permutations of its part, a fresh one (generator(seed, "part-perm", worker, pass)) each
    time the part runs out; step s reads stream positions s * B .. s * B + B - 1, so a batch
    may end one pass and start the next, and parts smaller than B repeat samples within it.

    Args:
        parts: the sample indices of each worker (from dsgd.data.partition.split).
        local_batch, seed: as for WithoutReplacementSampler.
        replacement: draw with replacement from the part, or walk it.
        steps_per_epoch: only names the epoch length; defaults to
            max(1, sum of part sizes // (n_workers * local_batch)): the mean part size over
            the local batch, so one epoch is one pass over the data in total.

    Example:
        >>> s = PartSampler([torch.arange(0, 10), torch.arange(10, 13)], 3, seed=0, replacement=False)
        >>> sorted(s.indices(1, 0).tolist()), sorted(s.indices(1, 1).tolist())  # one pass each
        ([10, 11, 12], [10, 11, 12])
    """

    def __init__(self, parts, local_batch: int, seed: int, replacement: bool,
                 steps_per_epoch: int | None = None) -> None:
        self.parts = [torch.as_tensor(p, dtype=torch.int64) for p in parts]
        n_samples = sum(len(p) for p in self.parts)
        _check_sizes(n_samples, len(self.parts), local_batch)
        if any(len(p) == 0 for p in self.parts):
            raise ValueError("every worker's part must hold at least one sample")
        if steps_per_epoch is None:
            steps_per_epoch = max(1, n_samples // (len(self.parts) * local_batch))
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.n_samples, self.n_workers, self.local_batch = n_samples, len(self.parts), local_batch
        self.seed, self.replacement, self.steps_per_epoch = seed, replacement, steps_per_epoch
        self._perms: dict[tuple[int, int], torch.Tensor] = {}

    def _perm(self, worker: int, pass_: int) -> torch.Tensor:
        key = (worker, pass_)
        if key not in self._perms:
            if len(self._perms) > 4 * self.n_workers:  # steps arrive in order: keep only recent passes
                self._perms.clear()
            g = generator(self.seed, "part-perm", worker, pass_)
            self._perms[key] = torch.randperm(len(self.parts[worker]), generator=g)
        return self._perms[key]

    def indices(self, worker: int, step: int) -> torch.Tensor:
        """Sample indices (int64, length local_batch) for `worker` at global `step`."""
        _check_query(worker, step, self.n_workers)
        part, B = self.parts[worker], self.local_batch
        if self.replacement:
            g = generator(self.seed, "draw", worker, step)
            return part[torch.randint(len(part), (B,), generator=g)]
        positions = torch.arange(step * B, (step + 1) * B, dtype=torch.int64)
        passes, offsets = positions // len(part), positions % len(part)
        out = torch.empty(B, dtype=torch.int64)
        for p in passes.unique().tolist():
            hit = passes == p
            out[hit] = part[self._perm(worker, p)[offsets[hit]]]
        return out


def make_sampler(replacement: bool, n_samples: int, n_workers: int, local_batch: int,
                 seed: int, steps_per_epoch: int | None = None, parts=None) -> Sampler:
    """WithReplacementSampler if `replacement`, else WithoutReplacementSampler; a PartSampler
    over `parts` (one index array per worker) when they are given."""
    if parts is not None:
        if len(parts) != n_workers or sum(len(p) for p in parts) != n_samples:
            raise ValueError(f"parts must be {n_workers} arrays covering {n_samples} samples")
        return PartSampler(parts, local_batch, seed, replacement, steps_per_epoch)
    cls = WithReplacementSampler if replacement else WithoutReplacementSampler
    return cls(n_samples, n_workers, local_batch, seed, steps_per_epoch)

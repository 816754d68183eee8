"""Drawing a worker's training batch at a step, and walking the test set."""
from __future__ import annotations

from typing import Iterator

import torch

from dsgd.data.augment import Augmentation
from dsgd.data.datasets import TrainingData
from dsgd.data.samplers import Sampler


def local_batch(dataset: TrainingData, sampler: Sampler, worker: int, step: int, seed: int,
                augment: bool | Augmentation = False, label_noise_p: float = 0.0,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The (inputs, targets) worker `worker` trains on at global `step`.

    A pure function of (dataset, sampler settings, seed, worker, step): indices
    come from the sampler, augmentation from generator(seed, "augment", worker,
    step), label noise from generator(seed, "noise", worker, step).

    Args:
        dataset: training split.
        sampler: from make_sampler, built with the same seed.
        worker, step: which worker, which global step (0-based).
        seed: run seed.
        augment: True for the dataset's default (augmentation_for), False for none,
            or an explicit Augmentation.
        label_noise_p: probability of replacing each label by another class.
        device: where the returned tensors live; uint8 images move before
            normalisation, a quarter of the float32 bytes.

    Returns:
        (x, y) as the dataset's `draw` gives them: for images float32 B_loc x C x H x W
        normalised by the dataset's mean and std and int64 B_loc labels; for text int64
        B_loc x context windows and their next tokens.
    """
    return dataset.draw(sampler.indices(worker, step), seed, worker, step, augment, label_noise_p, device)


def shard_range(n: int, rank: int, size: int) -> range:
    """The contiguous slice of 0..n-1 that `rank` of `size` handles.

    The first n % size ranks get one extra item, so sizes differ by at most one
    and the slices tile 0..n-1 in rank order.

    Example:
        >>> [shard_range(10, r, 3) for r in range(3)]
        [range(0, 4), range(4, 7), range(7, 10)]
    """
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"need 0 <= rank < size, got rank={rank}, size={size}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def eval_batches(dataset: TrainingData, batch_size: int, device: torch.device | str = "cpu",
                 items: range | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield normalised (x, y) batches over `items` (default: the whole set), in order.

    Example:
        >>> from dsgd.data.datasets import load_dataset
        >>> ds = load_dataset("synthetic", n_samples=10, image_shape=(1, 4, 4))
        >>> [len(y) for _, y in eval_batches(ds, 4, items=shard_range(10, 0, 2))]
        [4, 1]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    items = items if items is not None else range(len(dataset))
    for start in range(items.start, items.stop, batch_size):
        yield dataset.take(slice(start, min(start + batch_size, items.stop)), device)

"""Datasets held in memory, looked up by name in a registry.

A dataset is anything with the small protocol the trainer reads (see `TrainingData`): its length,
the (inputs, targets) of given sample indices, labels where partitions need them, and the task its
targets define. Images held as uint8 are one implementation, byte streams of text another
(dsgd.data.text.TokenStream).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import torch

from dsgd.data import cifar10, fashion_mnist, synthetic, text
from dsgd.data.augment import Augmentation, augmentation_for
from dsgd.data.label_noise import corrupt_labels
from dsgd.data.rng import generator


class TrainingData(Protocol):
    """What the trainer needs of a dataset split.

    Attributes:
        name: registry name.
        task: what the targets mean, a key of dsgd.tasks.TASKS ("classification", "next-token").
        num_classes: size of the model's output (classes, or the vocabulary).
        labels: one int64 label per sample, or None where there are none (partitions need them).
    """

    name: str
    task: str
    num_classes: int
    labels: Optional[torch.Tensor]

    def __len__(self) -> int: ...

    def take(self, idx, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of the samples `idx` (an index tensor or a slice), as the model reads them."""

    def draw(self, idx, seed: int, worker: int, step: int, augment, label_noise: float,
             device) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch of the samples `idx`: `take` plus the run's augmentation and label noise,
        random from (seed, worker, step) alone."""


@dataclass(frozen=True)
class Dataset:
    """One split of a dataset, all in memory.

    Images stay uint8 (a quarter of the float32 size); `to_float` normalises a
    batch when it is drawn.

    Attributes:
        name: registry name, e.g. "fashion-mnist".
        images: uint8 tensor N x C x H x W.
        labels: int64 tensor N.
        num_classes: number of classes.
        mean, std: per-channel statistics of the training split, pixels in [0, 1].

    Example:
        >>> ds = load_dataset("synthetic", n_samples=64, image_shape=(1, 8, 8))
        >>> len(ds), ds.in_channels, ds.image_size
        (64, 1, 8)
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    task: str = "classification"

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 of shape ({len(self.images)},)")
        if not len(self.mean) == len(self.std) == self.images.shape[1]:
            raise ValueError("mean and std need one entry per image channel")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        """Height of the (square) images."""
        return self.images.shape[2]

    def take(self, idx, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float32 images and int64 labels; uint8 moves to the device before normalising."""
        return (to_float(self.images[idx].to(device, non_blocking=True), self.mean, self.std),
                self.labels[idx].to(device, non_blocking=True))

    def draw(self, idx, seed, worker, step, augment, label_noise, device):
        """Augmentation from generator(seed, "augment", worker, step), label noise from
        generator(seed, "noise", worker, step)."""
        idx = idx.to(self.images.device)
        images, labels = self.images[idx], self.labels[idx]
        aug = augmentation_for(self.name) if augment is True else augment
        if aug and aug.enabled:
            images = aug(images, generator(seed, "augment", worker, step))
        if label_noise > 0:
            labels = corrupt_labels(labels, self.num_classes, label_noise, generator(seed, "noise", worker, step))
        x = to_float(images.to(device, non_blocking=True), self.mean, self.std)
        return x, labels.to(device, non_blocking=True)


def to_float(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Turn a uint8 batch N x C x H x W into float32 (x / 255 - mean) / std, on its own device."""
    shape = (1, -1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(shape)
    return (images.to(torch.float32) / 255.0 - m) / s


def _fashion_mnist(data_dir: str | Path | None, train: bool) -> Dataset:
    images, labels = fashion_mnist.load_fashion_mnist(data_dir, train)
    return Dataset("fashion-mnist", images, labels, fashion_mnist.NUM_CLASSES,
                   fashion_mnist.MEAN, fashion_mnist.STD)


def _cifar10(data_dir: str | Path | None, train: bool) -> Dataset:
    images, labels = cifar10.load_cifar10(data_dir, train)
    return Dataset("cifar10", images, labels, cifar10.NUM_CLASSES, cifar10.MEAN, cifar10.STD)


def _synthetic(data_dir: str | Path | None, train: bool, **options: Any) -> Dataset:
    images, labels = synthetic.make_synthetic(train=train, **options)
    channels = images.shape[1]
    # Prototypes are uniform in [0, 1] plus noise: mean 0.5, std about 0.35 per channel.
    num_classes = int(options.get("num_classes", synthetic.DEFAULT_NUM_CLASSES))
    return Dataset("synthetic", images, labels, num_classes, (0.5,) * channels, (0.35,) * channels)


def _fortunes(data_dir: str | Path | None, train: bool, context: int = text.DEFAULT_CONTEXT) -> text.TokenStream:
    stream = text.load_fortunes(data_dir)[0 if train else 1]
    return text.TokenStream("fortunes", stream, context)


DATASETS: dict[str, Callable[..., TrainingData]] = {
    "fashion-mnist": _fashion_mnist,
    "cifar10": _cifar10,
    "synthetic": _synthetic,
    "fortunes": _fortunes,
}
OPTIONS = {"synthetic": None, "fortunes": {"context"}}  # the options each dataset takes (None: any)


def load_dataset(name: str, data_dir: str | Path | None = None, train: bool = True,
                 **options: Any) -> TrainingData:
    """Load the train or test split of a registered dataset.

    Args:
        name: one of DATASETS ("fashion-mnist", "cifar10", "synthetic", "fortunes").
        data_dir: where the files are; None means the dataset's default place.
        train: training split if True, else test split (fortunes: the last tenth of the text).
        options: extra settings: "synthetic" takes those of make_synthetic, "fortunes" `context`
            (tokens per sample).

    Raises:
        ValueError: unknown name, or options given to a dataset read from files.
        DatasetError: missing or malformed files.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    allowed = OPTIONS.get(name, set())
    if allowed is not None and set(options) - allowed:
        raise ValueError(f"dataset {name!r} takes {'no options' if not allowed else sorted(allowed)}, "
                         f"got {sorted(options)}")
    return DATASETS[name](data_dir, train, **options)

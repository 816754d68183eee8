"""Datasets held in memory as uint8 tensors, looked up by name in a registry."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from dsgd.data import cifar10, fashion_mnist, synthetic


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


DATASETS: dict[str, Callable[..., Dataset]] = {
    "fashion-mnist": _fashion_mnist,
    "cifar10": _cifar10,
    "synthetic": _synthetic,
}


def load_dataset(name: str, data_dir: str | Path | None = None, train: bool = True,
                 **options: Any) -> Dataset:
    """Load the train or test split of a registered dataset.

    Args:
        name: one of DATASETS ("fashion-mnist", "cifar10", "synthetic").
        data_dir: where the files are; None means the dataset's default place.
        train: training split if True, else test split.
        options: extra settings, accepted only by "synthetic" (see make_synthetic).

    Raises:
        ValueError: unknown name, or options given to a dataset read from files.
        DatasetError: missing or malformed files.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    if options and name != "synthetic":
        raise ValueError(f"dataset {name!r} takes no options, got {sorted(options)}")
    return DATASETS[name](data_dir, train, **options)

"""A synthetic image classification set, for speed tests and smoke runs only.

Its images are class prototypes plus pixel noise: learnable, but nothing measured
on it says anything about generalization. Use Fashion-MNIST or CIFAR-10 for that.
"""
from __future__ import annotations

import torch

from dsgd.data.rng import generator

# Pixel noise around each prototype, in uint8 grey levels.
NOISE_STD = 48.0
DEFAULT_NUM_CLASSES = 10


def make_synthetic(
    n_samples: int = 10_000,
    image_shape: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = DEFAULT_NUM_CLASSES,
    seed: int = 0,
    train: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (images uint8 N x C x H x W, labels int64 N), a pure function of the arguments.

    Both splits share the class prototypes (drawn from `seed` alone) and differ in
    their samples, so a model trained on one is scored fairly on the other.

    Args:
        n_samples: number of images N.
        image_shape: (channels, height, width).
        num_classes: number of classes; labels are balanced up to rounding.
        seed: fixes prototypes, labels and noise.
        train: picks which of the two independent sample streams to draw.

    Example:
        >>> images, labels = make_synthetic(100, (1, 8, 8), num_classes=4)
        >>> images.shape, int(labels.max())
        (torch.Size([100, 1, 8, 8]), 3)
    """
    if n_samples < 1 or num_classes < 2:
        raise ValueError(f"need n_samples >= 1 and num_classes >= 2, "
                         f"got {n_samples}, {num_classes}")
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (channels, height, width), got {image_shape}")
    prototypes = torch.rand((num_classes, *image_shape), generator=generator(seed, "prototypes"))
    g = generator(seed, "synthetic", "train" if train else "test")
    labels = torch.randperm(n_samples, generator=g) % num_classes
    noise = torch.randn((n_samples, *image_shape), generator=g) * NOISE_STD
    images = (prototypes[labels] * 255.0 + noise).round().clamp_(0, 255).to(torch.uint8)
    return images, labels

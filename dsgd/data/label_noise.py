"""Label noise: each drawn label is replaced, with probability p, by another class."""
from __future__ import annotations

import torch


def corrupt_labels(labels: torch.Tensor, num_classes: int, p: float,
                   generator: torch.Generator) -> torch.Tensor:
    """Replace each label independently with prob. p by a uniformly random *other* class.

    Adding an offset in 1..num_classes-1 modulo num_classes picks each other class
    with equal chance and never the original. Call it with a fresh generator for
    every draw (e.g. generator(seed, "noise", worker, step)) so a sample seen twice
    gets independent noise each time, as in the label noise SGD experiments of
    Gu et al. 2023 (after Damian et al. 2021).

    Args:
        labels: int64 tensor of classes in 0..num_classes-1, any device.
        num_classes: number of classes, at least 2.
        p: corruption probability in [0, 1].
        generator: CPU generator for the draws.

    Returns:
        A new tensor; `labels` is not modified.

    Example:
        >>> y = torch.zeros(5, dtype=torch.int64)
        >>> corrupt_labels(y, 10, 1.0, torch.Generator().manual_seed(0)).ne(0).all().item()
        True
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"label noise p must be in [0, 1], got {p}")
    if num_classes < 2:
        raise ValueError(f"label noise needs num_classes >= 2, got {num_classes}")
    if p == 0.0:
        return labels.clone()
    corrupt = torch.rand(labels.shape, generator=generator) < p
    offset = torch.randint(1, num_classes, labels.shape, generator=generator)
    offset = (offset * corrupt).to(labels.device)
    return (labels + offset) % num_classes

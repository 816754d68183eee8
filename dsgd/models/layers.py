"""Shared pieces of the models: the normalization choice and weight initialization."""
from __future__ import annotations

import torch.nn as nn

NORMS = ("bn", "gn", "none")


def norm_layer(norm: str, channels: int, n_groups: int, dims: int = 2) -> nn.Module:
    """BatchNorm, GroupNorm with `n_groups` groups, or identity, over `channels`.

    Args:
        norm: "bn", "gn" or "none".
        channels: feature channels to normalize.
        n_groups: groups for "gn"; must divide `channels`.
        dims: 2 for N x C x H x W activations, 1 for N x C features.
    """
    if norm == "bn":
        return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)
    if norm == "gn":
        if channels % n_groups:
            raise ValueError(f"n_groups={n_groups} does not divide a layer of {channels} channels")
        return nn.GroupNorm(n_groups, channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions (He et al. 2015, fan-in), unit-scale zero-shift norms.

    Linear layers keep PyTorch's default. All draws come from torch's global RNG,
    so torch.manual_seed fixes the result.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

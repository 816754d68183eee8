"""Models for dsgd, built by name from a registry.

Every model is a plain functional nn.Module (no in-place activations, no
data-dependent control flow, standard BatchNorm2d) so that a stack of replicas
can run through torch.func.functional_call under torch.func.vmap.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch.nn as nn

from dsgd.models.cnn import MLP, SmallCNN
from dsgd.models.gpt import GPT
from dsgd.models.layers import NORMS
from dsgd.models.resnet import ResNet, cifar_resnet, resnet18
from dsgd.models.vgg import VGG

# Groups per GroupNorm layer when norm="gn" and n_groups is not given; divides
# every layer width used here (16 to 512).
DEFAULT_GROUPS = 8


def _cnn(c: int, k: int, size: int, norm: str, groups: int) -> nn.Module:
    if size < 4:
        raise ValueError(f"cnn needs images of at least 4 x 4, got {size}")
    return SmallCNN(c, k, size, norm, groups)


# Each builder takes (in_channels, num_classes, image_size, norm, n_groups).
MODELS: dict[str, Callable[[int, int, int, str, int], nn.Module]] = {
    "cnn": _cnn,
    "mlp": lambda c, k, size, norm, groups: MLP(c, k, size, norm, groups),
    "resnet20": lambda c, k, size, norm, groups: cifar_resnet(20, c, k, norm, groups),
    "resnet56": lambda c, k, size, norm, groups: cifar_resnet(56, c, k, norm, groups),
    "resnet18": lambda c, k, size, norm, groups: resnet18(c, k, norm, groups),
    "vgg16": lambda c, k, size, norm, groups: VGG(c, k, norm=norm, n_groups=groups),
}


# Models of token sequences; each builder takes (vocabulary, context).
TEXT_MODELS: dict[str, Callable[[int, int], nn.Module]] = {
    "gpt": lambda vocab, context: GPT(context, vocab),
}


def build_model_for(name: str, data, norm: str = "bn", n_groups: int | None = None) -> nn.Module:
    """The model `name` shaped for the dataset split `data` (images: channels, classes and size;
    text: vocabulary and context). A model of the other kind is refused in one line (ValueError)."""
    if getattr(data, "task", "classification") == "next-token":
        if name not in TEXT_MODELS:
            raise ValueError(f"--model {name} reads images; --dataset {data.name} is text: use --model "
                             f"{' or '.join(sorted(TEXT_MODELS))}")
        return TEXT_MODELS[name](data.num_classes, data.context)
    if name in TEXT_MODELS:
        raise ValueError(f"--model {name} reads text; --dataset {data.name} is images: use one of "
                         f"{', '.join(sorted(MODELS))}")
    return build_model(name, data.in_channels, data.num_classes, data.image_size, norm=norm, n_groups=n_groups)


def build_model(name: str, in_channels: int, num_classes: int, image_size: int,
                norm: str = "bn", n_groups: int | None = None) -> nn.Module:
    """Build a freshly initialized model; torch.manual_seed beforehand fixes its weights.

    Args:
        name: one of MODELS: "cnn", "mlp", "resnet20", "resnet56", "resnet18", "vgg16".
        in_channels, num_classes, image_size: from the dataset (square images).
        norm: "bn" (BatchNorm), "gn" (GroupNorm) or "none".
        n_groups: GroupNorm groups; must divide every normalized width. Only for
            norm="gn"; defaults to DEFAULT_GROUPS.

    Example:
        >>> model = build_model("resnet20", in_channels=1, num_classes=10, image_size=28)
        >>> sum(p.numel() for p in model.parameters()) < 300_000
        True
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if min(in_channels, num_classes, image_size) < 1:
        raise ValueError(f"in_channels, num_classes and image_size must be >= 1, got "
                         f"{in_channels}, {num_classes}, {image_size}")
    if n_groups is not None and norm != "gn":
        warnings.warn(f"n_groups={n_groups} is ignored with norm={norm!r}", stacklevel=2)
    groups = DEFAULT_GROUPS if n_groups is None else n_groups
    if groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {groups}")
    try:
        return MODELS[name](in_channels, num_classes, image_size, norm, groups)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None


__all__ = ["DEFAULT_GROUPS", "GPT", "MODELS", "TEXT_MODELS", "MLP", "build_model_for", "ResNet", "SmallCNN", "VGG", "build_model",
           "cifar_resnet", "resnet18"]

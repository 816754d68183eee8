"""ResNets for 32 x 32 inputs: ResNet-20/56 (He et al. 2016, Sec. 4.2) and ResNet-18.

ResNet-20/56 use shortcut option A: identity, with strided subsampling and zero
channels appended where a stage widens. It adds no parameters, so ResNet-20 has
the 0.27M of the paper. ResNet-18 is the usual CIFAR variant (3x3 stem, no max
pool) with 1x1 projection shortcuts (option B). All end in adaptive average
pooling, so 28 x 28 inputs work too.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dsgd.models.layers import init_weights, norm_layer


class PadShortcut(nn.Module):
    """Option A: subsample by `stride` and append zero channels up to `out_channels`."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = out_channels - in_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


def _projection(in_channels: int, out_channels: int, stride: int, norm: str,
                n_groups: int) -> nn.Module:
    # Option B: a strided 1x1 convolution and a norm, as in the ImageNet ResNets.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=norm == "none"),
        norm_layer(norm, out_channels, n_groups),
    )


class BasicBlock(nn.Module):
    """relu(x' + shortcut(x)) with x' = norm(conv3x3(relu(norm(conv3x3(x)))))."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str,
                 n_groups: int, shortcut: str) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=bias)
        self.norm1 = norm_layer(norm, out_channels, n_groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=bias)
        self.norm2 = norm_layer(norm, out_channels, n_groups)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = _projection(in_channels, out_channels, stride, norm, n_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """3x3 stem, stages of basic blocks (the first block of a later stage halves the
    resolution), global average pooling, linear classifier.

    Args:
        in_channels, num_classes: set by the dataset.
        widths: channels of each stage; the stem has widths[0].
        blocks: basic blocks per stage.
        shortcut: "A" (parameter-free) or "B" (1x1 projection) where shapes change.
        norm, n_groups: see dsgd.models.layers.norm_layer.

    Example:
        >>> net = ResNet(3, 10, widths=(16, 32, 64), blocks=(3, 3, 3), shortcut="A")
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, ...],
                 blocks: tuple[int, ...], shortcut: str, norm: str = "bn",
                 n_groups: int = 8) -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=norm == "none")
        self.norm1 = norm_layer(norm, widths[0], n_groups)
        layers, c_in = [], widths[0]
        for stage, (width, n) in enumerate(zip(widths, blocks)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(c_in, width, stride, norm, n_groups, shortcut))
                c_in = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.norm1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def cifar_resnet(depth: int, in_channels: int, num_classes: int, norm: str = "bn",
                 n_groups: int = 8) -> ResNet:
    """ResNet-`depth` of He et al. 2016 for CIFAR: 6n + 2 layers, 16/32/64 channels."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
    n = (depth - 2) // 6
    return ResNet(in_channels, num_classes, (16, 32, 64), (n, n, n), "A", norm, n_groups)


def resnet18(in_channels: int, num_classes: int, norm: str = "bn", n_groups: int = 8) -> ResNet:
    """ResNet-18, CIFAR variant: 64..512 channels, two blocks per stage, about 11.2M parameters."""
    return ResNet(in_channels, num_classes, (64, 128, 256, 512), (2, 2, 2, 2), "B", norm,
                  n_groups)

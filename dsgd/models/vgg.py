"""VGG-16 for 32 x 32 inputs (Simonyan and Zisserman 2015, CIFAR variant).

Thirteen 3x3 convolutions, each followed by a norm (BatchNorm by default, as in
the CIFAR experiments of Gu et al. 2023) and a ReLU, five 2x2 max pools, then a
single linear classifier on the 512 remaining features. The pools round up, so a
28 x 28 input shrinks 28-14-7-4-2-1 where 32 x 32 shrinks 32-16-8-4-2-1.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dsgd.models.layers import init_weights, norm_layer

# Output channels of each convolution; "M" is a 2x2 max pool.
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    """Convolutions and pools as listed in `config`, global average pool, linear classifier.

    Example:
        >>> VGG(3, 10)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int, num_classes: int, config: tuple = VGG16,
                 norm: str = "bn", n_groups: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            layers += [nn.Conv2d(c_in, item, 3, padding=1, bias=norm == "none"),
                       norm_layer(norm, item, n_groups), nn.ReLU()]
            c_in = item
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))

"""Random crop with zero padding and horizontal flip, for a whole batch at once.

Works on uint8 or float batches N x C x H x W on any device; the random draws
are made on the CPU from the given generator, so results do not depend on the
device. No Python loop over samples: the batch is padded once and every output
pixel is gathered from a per-sample shifted (and maybe mirrored) index grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4,
              crop: bool = True, flip: bool = True) -> torch.Tensor:
    """Randomly crop (after zero padding) and horizontally flip each image of a batch.

    Args:
        images: N x C x H x W.
        generator: CPU generator for the per-sample offsets and flips.
        padding: zero pixels added on each side before cropping back to H x W.
        crop: draw a random offset in 0..2*padding per axis (else keep the centre).
        flip: mirror left-right with probability 1/2.

    Returns:
        A new tensor, same shape, dtype and device as `images`.

    Example:
        >>> x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
        >>> crop_flip(x, torch.Generator().manual_seed(0), padding=1).shape
        torch.Size([1, 1, 4, 4])
    """
    n, c, h, w = images.shape
    p = padding if crop else 0
    if p < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if crop and p > 0:
        dy, dx = torch.randint(0, 2 * p + 1, (2, n, 1), generator=generator)
    else:
        dy = dx = torch.full((n, 1), p, dtype=torch.int64)
    cols = torch.arange(w).expand(n, w)
    if flip:
        mirrored = torch.rand((n, 1), generator=generator) < 0.5
        cols = torch.where(mirrored, cols.flip(1), cols)
    rows = torch.arange(h) + dy  # n x h
    cols = cols + dx  # n x w
    # Flat index of each output pixel in the padded (h + 2p) x (w + 2p) plane.
    flat = (rows.unsqueeze(2) * (w + 2 * p) + cols.unsqueeze(1)).view(n, 1, h * w)
    padded = F.pad(images, (p, p, p, p)) if p else images
    flat = flat.to(images.device).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, flat).view(n, c, h, w)


@dataclass(frozen=True)
class Augmentation:
    """A crop/flip setting, applied with `aug(images, generator)`.

    Example:
        >>> augmentation_for("cifar10")
        Augmentation(crop=True, flip=True, padding=4)
    """

    crop: bool = True
    flip: bool = True
    padding: int = 4

    @property
    def enabled(self) -> bool:
        return self.flip or (self.crop and self.padding > 0)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.enabled:
            return images
        return crop_flip(images, generator, self.padding, self.crop, self.flip)


NO_AUGMENTATION = Augmentation(crop=False, flip=False, padding=0)

# Crop 32 with padding 4 plus flips is the standard CIFAR-10 recipe (He et al. 2016);
# Fashion-MNIST is usually trained without augmentation. Pass an Augmentation
# explicitly for anything else, e.g. Augmentation(crop=True, flip=True, padding=2).
AUGMENTATIONS: dict[str, Augmentation] = {
    "cifar10": Augmentation(crop=True, flip=True, padding=4),
    "fashion-mnist": NO_AUGMENTATION,
    "synthetic": NO_AUGMENTATION,
}


def augmentation_for(dataset_name: str) -> Augmentation:
    """The default augmentation of a dataset; none for datasets not listed."""
    return AUGMENTATIONS.get(dataset_name, NO_AUGMENTATION)

"""Fashion-MNIST from its IDX .gz files (Xiao et al. 2017).

The Debian package `dataset-fashion-mnist` installs the four files in
DEFAULT_DIR; any directory holding them (gzipped or not) works.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from dsgd.data.cache import cached

from dsgd.data.errors import DatasetError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
NUM_CLASSES = 10
IMAGE_SIZE = 28
# Per-channel statistics of the 60000 training images, pixel values scaled to [0, 1].
MEAN = (0.2860,)
STD = (0.3530,)

_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_UBYTE = 0x08  # the IDX type code for unsigned bytes, the only one these files use


def _find(data_dir: Path, stem: str) -> Path:
    for candidate in (data_dir / f"{stem}.gz", data_dir / stem):
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"Fashion-MNIST file not found: {data_dir / (stem + '.gz')} "
        "(install the package dataset-fashion-mnist or pass --data-dir)"
    )


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path}: cannot read the file ({err})") from None


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes with `ndim` dimensions into a uint8 array.

    Args:
        path: the file, gzipped if its name ends in .gz.
        ndim: the number of dimensions the header must declare (3 images, 1 labels).

    Raises:
        DatasetError: unreadable file, wrong magic number, or a payload whose
            length does not match the header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DatasetError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    zero, type_code, found_ndim = struct.unpack(">HBB", raw[:4])
    expected_magic = (_UBYTE << 8) | ndim
    if zero != 0 or type_code != _UBYTE or found_ndim != ndim:
        raise DatasetError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()}, expected 0x{expected_magic:08x}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path}: IDX payload has {len(raw) - header} bytes, header shape {shape} "
            f"needs {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(
    data_dir: str | Path | None = None, train: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split as (images uint8 N x 1 x 28 x 28, labels int64 N).

    Args:
        data_dir: directory with the four IDX files; DEFAULT_DIR when None.
        train: the 60000-image training split if True, else the 10000-image test split.

    Example:
        >>> images, labels = load_fashion_mnist(train=False)  # doctest: +SKIP
        >>> images.shape  # doctest: +SKIP
        torch.Size([10000, 1, 28, 28])
    """
    data_dir = Path(data_dir) if data_dir is not None else DEFAULT_DIR
    image_path, label_path = (_find(data_dir, stem) for stem in _FILES[train])
    split = "train" if train else "test"
    return cached(f"fashion-mnist-{split}", (image_path, label_path), lambda: _decode(image_path, label_path))


def _decode(image_path: Path, label_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(image_path, ndim=3)
    labels = read_idx(label_path, ndim=1)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetError(f"{image_path}: images are {images.shape[1:]}, expected 28 x 28")
    if len(labels) != len(images):
        raise DatasetError(
            f"{label_path}: {len(labels)} labels for {len(images)} images in {image_path.name}"
        )
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        raise DatasetError(f"{label_path}: label {int(labels.max())} is not in 0..9")
    images_t = torch.from_numpy(images.copy()).unsqueeze(1)
    labels_t = torch.from_numpy(labels.astype(np.int64))
    return images_t, labels_t

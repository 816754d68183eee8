"""CIFAR-10 from its "python version" batches (Krizhevsky 2009).

The batches are pickles, and unpickling can run arbitrary code, so they are read
with an unpickler that resolves only the handful of globals a batch needs (numpy
array reconstruction and the latin-1 bytes codec) and refuses everything else.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dsgd.data.errors import DatasetError

NUM_CLASSES = 10
IMAGE_SIZE = 32
# Per-channel statistics of the 50000 training images, pixel values scaled to [0, 1].
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

SUBDIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
_WHERE = "CIFAR-10 must be provided via --data-dir (https://www.cs.toronto.edu/~kriz/cifar.html)"


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
    if encoding.replace("-", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refusing a numpy array of Python objects")
    return dtype


_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's array reconstructor, whatever module holds it
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file as (images uint8 N x 3 x 32 x 32, labels int64 N).

    Raises:
        DatasetError: missing file, a pickle that asks for anything beyond plain
            data and numpy arrays, or contents not shaped like a CIFAR-10 batch.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"CIFAR-10 batch not found: {path}; {_WHERE}")
    try:
        with open(path, "rb") as f:
            # encoding="bytes" is how the batches (pickled by Python 2) are meant to be read.
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as err:  # any failure to parse means the file is not a batch
        raise DatasetError(f"{path}: not a CIFAR-10 batch ({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a pickled dict, found {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    shaped = isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
    if not shaped or data.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE:
        raise DatasetError(f"{path}: b'data' must be a uint8 array of shape N x 3072")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: b'labels' must be a list of integers") from None
    if labels.shape != (len(data),):
        raise DatasetError(f"{path}: {labels.size} labels for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DatasetError(f"{path}: labels must lie in 0..9")
    return data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE), labels


def batch_dir(data_dir: str | Path | None) -> Path:
    """The directory holding the batches: data_dir itself or its cifar-10-batches-py."""
    if data_dir is None:
        raise DatasetError(_WHERE)
    data_dir = Path(data_dir)
    if (data_dir / SUBDIR).is_dir():
        return data_dir / SUBDIR
    if not data_dir.is_dir():
        raise DatasetError(f"CIFAR-10 directory not found: {data_dir}; {_WHERE}")
    return data_dir


def load_cifar10(
    data_dir: str | Path | None = None, train: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split as (images uint8 N x 3 x 32 x 32, labels int64 N).

    Args:
        data_dir: directory with data_batch_1..5 and test_batch, or its parent
            holding cifar-10-batches-py. Required: nothing is downloaded.
        train: the five training batches if True, else test_batch.

    Example:
        >>> images, labels = load_cifar10("data", train=False)  # doctest: +SKIP
        >>> images.shape  # doctest: +SKIP
        torch.Size([10000, 3, 32, 32])
    """
    root = batch_dir(data_dir)
    parts = [read_batch(root / name) for name in (TRAIN_BATCHES if train else TEST_BATCHES)]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)

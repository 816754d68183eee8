"""dsgd.data.fashion_mnist: the real files load, malformed ones fail with one clear line."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dsgd.data import DatasetError, load_dataset
from dsgd.data.fashion_mnist import DEFAULT_DIR, MEAN, STD, load_fashion_mnist

pytestmark = pytest.mark.skipif(not (DEFAULT_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                                reason="package dataset-fashion-mnist not installed")


@pytest.fixture(scope="module")
def train():
    return load_dataset("fashion-mnist", train=True)


@pytest.fixture(scope="module")
def test():
    return load_dataset("fashion-mnist", train=False)


def test_split_sizes_and_shapes(train, test):
    assert train.images.shape == (60000, 1, 28, 28)
    assert test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.num_classes == test.num_classes == 10
    assert (train.in_channels, train.image_size) == (1, 28)


def test_labels_in_range_and_balanced(train, test):
    assert torch.equal(torch.bincount(train.labels), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 1000))


def test_first_sample_matches_an_independent_parse(train):
    with gzip.open(DEFAULT_DIR / "train-labels-idx1-ubyte.gz") as f:
        magic, count = struct.unpack(">II", f.read(8))
        first_label = f.read(1)[0]
    with gzip.open(DEFAULT_DIR / "train-images-idx3-ubyte.gz") as f:
        f.read(16)
        first_image = torch.tensor(list(f.read(28 * 28)), dtype=torch.uint8).view(1, 28, 28)
    assert (magic, count) == (0x801, 60000)
    assert train.labels[0].item() == first_label
    assert torch.equal(train.images[0], first_image)


def test_normalisation_constants_match_the_training_images(train):
    pixels = train.images.float() / 255
    assert pixels.mean().item() == pytest.approx(MEAN[0], abs=1e-3)
    assert pixels.std().item() == pytest.approx(STD[0], abs=1e-3)


# --- malformed files, written small in tmp_path --------------------------------------

def _idx(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = (0x08 << 8 | array.ndim) if magic is None else magic
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def _write_split(root: Path, images: bytes, labels: bytes, split: str = "t10k") -> None:
    (root / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    (root / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))


GOOD_IMAGES = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
GOOD_LABELS = np.array([4, 0, 9])


def _error(root: Path) -> str:
    with pytest.raises(DatasetError) as info:
        load_fashion_mnist(root, train=False)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_small_valid_files_load(tmp_path):
    _write_split(tmp_path, _idx(GOOD_IMAGES), _idx(GOOD_LABELS))
    images, labels = load_fashion_mnist(tmp_path, train=False)
    assert images.shape == (3, 1, 28, 28)
    assert torch.equal(images[:, 0], torch.from_numpy(GOOD_IMAGES.astype(np.uint8)))
    assert labels.tolist() == [4, 0, 9]


def test_uncompressed_files_load_too(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(GOOD_IMAGES))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(GOOD_LABELS))
    assert load_fashion_mnist(tmp_path, train=False)[1].tolist() == [4, 0, 9]


def test_missing_file(tmp_path):
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(GOOD_LABELS)))
    message = _error(tmp_path)
    assert "not found" in message and "t10k-images-idx3-ubyte.gz" in message


def test_wrong_magic_number(tmp_path):
    _write_split(tmp_path, _idx(GOOD_IMAGES, magic=0x0803_0000), _idx(GOOD_LABELS))
    message = _error(tmp_path)
    assert "magic" in message and "t10k-images-idx3-ubyte.gz" in message


def test_labels_file_in_place_of_images(tmp_path):
    _write_split(tmp_path, _idx(GOOD_LABELS), _idx(GOOD_LABELS))
    assert "magic" in _error(tmp_path)


def test_truncated_payload(tmp_path):
    _write_split(tmp_path, _idx(GOOD_IMAGES)[:-5], _idx(GOOD_LABELS))
    message = _error(tmp_path)
    assert "payload" in message and "images" in message


def test_truncated_gzip_stream(tmp_path):
    _write_split(tmp_path, _idx(GOOD_IMAGES), _idx(GOOD_LABELS))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    assert "cannot read" in _error(tmp_path)


def test_not_gzip_at_all(tmp_path):
    _write_split(tmp_path, _idx(GOOD_IMAGES), _idx(GOOD_LABELS))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"<html>404 not found</html>")
    assert "t10k-labels-idx1-ubyte.gz" in _error(tmp_path)


def test_empty_file(tmp_path):
    _write_split(tmp_path, _idx(GOOD_IMAGES), b"")
    assert "truncated" in _error(tmp_path)


def test_label_count_mismatch(tmp_path):
    _write_split(tmp_path, _idx(GOOD_IMAGES), _idx(GOOD_LABELS[:2]))
    assert "2 labels for 3 images" in _error(tmp_path)


def test_label_out_of_range(tmp_path):
    _write_split(tmp_path, _idx(GOOD_IMAGES), _idx(np.array([1, 2, 10])))
    assert "label 10" in _error(tmp_path)


def test_wrong_image_size(tmp_path):
    _write_split(tmp_path, _idx(np.zeros((3, 32, 32))), _idx(GOOD_LABELS))
    assert "28 x 28" in _error(tmp_path)

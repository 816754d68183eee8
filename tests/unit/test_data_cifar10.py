"""dsgd.data.cifar10: batches in the real format round trip; hostile pickles are refused."""
import os
import pickle

import numpy as np
import pytest
import torch

from dsgd.data import DatasetError, load_dataset
from dsgd.data.cifar10 import TRAIN_BATCHES, load_cifar10, read_batch

PER_BATCH = 4


def _batch(first: int, n: int = PER_BATCH) -> dict:
    # The layout of the real files: rows of 3072 bytes (R plane, G plane, B plane).
    data = (np.arange(first, first + n)[:, None] + np.arange(3072)[None, :]) % 256
    return {
        b"batch_label": b"test batch",
        b"labels": [(first + i) % 10 for i in range(n)],
        b"data": data.astype(np.uint8),
        b"filenames": [f"img_{first + i}.png".encode() for i in range(n)],
    }


def _write(path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the protocol of the distributed batches


@pytest.fixture
def cifar_dir(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i, name in enumerate(TRAIN_BATCHES):
        _write(root / name, _batch(i * PER_BATCH))
    _write(root / "test_batch", _batch(100))
    return root


def test_train_split_round_trip(cifar_dir):
    images, labels = load_cifar10(cifar_dir, train=True)
    assert images.shape == (5 * PER_BATCH, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    assert labels.tolist() == [i % 10 for i in range(5 * PER_BATCH)]
    # Row 7 is image 3 of batch 2; its first byte is the top-left red pixel.
    expected = torch.from_numpy(_batch(4)[b"data"][3].reshape(3, 32, 32))
    assert torch.equal(images[7], expected)


def test_test_split_and_parent_directory(cifar_dir):
    via_parent = load_cifar10(cifar_dir.parent, train=False)
    direct = load_cifar10(cifar_dir, train=False)
    assert torch.equal(via_parent[0], direct[0]) and torch.equal(via_parent[1], direct[1])
    assert direct[1].tolist() == [0, 1, 2, 3]


def test_registry_builds_a_dataset(cifar_dir):
    ds = load_dataset("cifar10", cifar_dir.parent, train=False)
    assert (ds.name, ds.num_classes, len(ds), ds.in_channels, ds.image_size) == \
        ("cifar10", 10, PER_BATCH, 3, 32)
    assert len(ds.mean) == len(ds.std) == 3


def test_str_keys_are_accepted(tmp_path):
    batch = {k.decode(): v for k, v in _batch(0).items()}
    _write(tmp_path / "test_batch", batch)
    assert load_cifar10(tmp_path, train=False)[0].shape == (PER_BATCH, 3, 32, 32)


def _python2_batch(data: bytes, labels: list) -> bytes:
    """A batch as Python 2's cPickle wrote them: protocol 2, str as SHORT_BINSTRING/BINSTRING,
    and the array reconstructor under its old module name numpy.core.multiarray."""
    n = len(labels)
    return b"".join([
        b"\x80\x02}(",                                          # PROTO 2, dict, MARK
        b"U\x04data",                                            # key 'data'
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n",
        b"K\x00\x85U\x01b\x87R",                                # _reconstruct(ndarray, (0,), 'b')
        b"(K\x01K" + bytes([n]) + b"M\x00\x0c\x86",               # state: 1, (n, 3072),
        b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R",                # dtype('u1', 0, 1)
        b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",  # with its own state
        b"\x89T" + len(data).to_bytes(4, "little") + data + b"tb",  # False, raw bytes; BUILD
        b"U\x06labels](" + b"".join(b"K" + bytes([k]) for k in labels) + b"e",
        b"u.",                                                     # SETITEMS, STOP
    ])


def test_python2_pickles_like_the_distributed_files_load(tmp_path):
    data = bytes(range(256)) * 24  # 2 images of 3072 bytes
    (tmp_path / "test_batch").write_bytes(_python2_batch(data, [3, 8]))
    images, labels = load_cifar10(tmp_path, train=False)
    assert labels.tolist() == [3, 8]
    assert torch.equal(images.flatten(), torch.tensor(list(data), dtype=torch.uint8))


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_calling_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    batch = _batch(0)
    batch[b"labels"] = _RunsACommand(marker)
    _write(tmp_path / "test_batch", batch)
    with pytest.raises(DatasetError, match="refusing to load global .*system"):
        load_cifar10(tmp_path, train=False)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    pytest.param(eval, id="builtins.eval"),
    pytest.param(np.array([1, "x"], dtype=object), id="object-array"),
])
def test_anything_beyond_plain_data_is_refused(tmp_path, payload):
    batch = _batch(0)
    batch[b"extra"] = payload
    _write(tmp_path / "test_batch", batch)
    with pytest.raises(DatasetError, match="refusing"):
        read_batch(tmp_path / "test_batch")


def test_no_directory_given_says_use_data_dir():
    with pytest.raises(DatasetError, match="--data-dir"):
        load_cifar10(None)


def test_missing_directory_says_use_data_dir(tmp_path):
    with pytest.raises(DatasetError, match="--data-dir"):
        load_cifar10(tmp_path / "nowhere")


def test_missing_batch_is_named(cifar_dir):
    (cifar_dir / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_cifar10(cifar_dir, train=True)


def test_garbage_file(tmp_path):
    (tmp_path / "test_batch").write_bytes(b"\x80\x02not a pickle")
    with pytest.raises(DatasetError, match="not a CIFAR-10 batch"):
        load_cifar10(tmp_path, train=False)


@pytest.mark.parametrize("change, message", [
    ({b"data": np.zeros((4, 100), np.uint8)}, "N x 3072"),
    ({b"data": np.zeros((4, 3072), np.float32)}, "N x 3072"),
    ({b"labels": [0, 1, 2]}, "3 labels for 4 images"),
    ({b"labels": [0, 1, 2, 10]}, "0..9"),
])
def test_malformed_contents(tmp_path, change, message):
    _write(tmp_path / "test_batch", {**_batch(0), **change})
    with pytest.raises(DatasetError, match=message):
        load_cifar10(tmp_path, train=False)

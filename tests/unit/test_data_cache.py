"""dsgd.data.cache: the decoded copy of a dataset is trusted only while its content matches the hash
written with it; otherwise it is rebuilt from the source files, with one line (tiny IDX files here)."""
import gzip
import struct

import numpy as np
import pytest
import torch

from dsgd.data import DatasetError, fashion_mnist
from dsgd.data.cache import DIGEST_SUFFIX, cached
from dsgd.data.fashion_mnist import load_fashion_mnist


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(f">I{array.ndim}I", 0x08 << 8 | array.ndim, *array.shape) + array.astype(np.uint8).tobytes()


@pytest.fixture
def source(tmp_path, monkeypatch):
    """A 20-image test split in tmp_path/src, and an empty cache in tmp_path/cache."""
    monkeypatch.setenv("DSGD_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    (src / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(rng.integers(0, 256, (20, 28, 28)))))
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(rng.integers(0, 10, 20))))
    return src


def the_copy(tmp_path):
    [copy] = (tmp_path / "cache").glob("*.pt")
    assert copy.with_name(copy.name + DIGEST_SUFFIX).is_file()
    return copy


def decoding_forbidden(monkeypatch):
    def decode(*paths):
        raise AssertionError("decoded the source files although the copy is whole")
    monkeypatch.setattr(fashion_mnist, "_decode", decode)


def test_a_copy_overwritten_after_it_was_written_is_rebuilt_from_the_sources(tmp_path, source, monkeypatch, capsys):
    images, labels = load_fashion_mnist(source, train=False)
    copy = the_copy(tmp_path)
    assert capsys.readouterr().err == ""
    changed = images.clone()
    changed[:8] = 255 - changed[:8]  # images overwritten in place; the copy still loads
    torch.save((changed, labels), copy)

    again, _ = load_fashion_mnist(source, train=False)
    assert torch.equal(again, images)
    assert capsys.readouterr().err.splitlines() == [
        f"dsgd.data: the decoded copy {copy} does not match its content hash (it was changed after it was written): "
        f"rebuilt it from {source / 't10k-images-idx3-ubyte.gz'}, {source / 't10k-labels-idx1-ubyte.gz'}"]

    decoding_forbidden(monkeypatch)  # rebuilt whole: the next load reads it, silently
    assert torch.equal(load_fashion_mnist(source, train=False)[0], images)
    assert capsys.readouterr().err == ""


def test_a_copy_that_no_longer_loads_is_rebuilt_with_one_line(tmp_path, source, capsys):
    images, _ = load_fashion_mnist(source, train=False)
    copy = the_copy(tmp_path)
    copy.write_bytes(copy.read_bytes()[:100])
    assert torch.equal(load_fashion_mnist(source, train=False)[0], images)
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"dsgd.data: the decoded copy {copy} does not load (")


def test_a_copy_without_a_hash_is_rebuilt_once_quietly(tmp_path, source, monkeypatch, capsys):
    images, _ = load_fashion_mnist(source, train=False)
    copy = the_copy(tmp_path)
    copy.with_name(copy.name + DIGEST_SUFFIX).unlink()  # as a version that kept no hash left it
    assert torch.equal(load_fashion_mnist(source, train=False)[0], images)
    assert the_copy(tmp_path) == copy and capsys.readouterr().err == ""
    decoding_forbidden(monkeypatch)
    assert torch.equal(load_fashion_mnist(source, train=False)[0], images)


def test_a_damaged_copy_whose_sources_are_gone_is_one_error_line(tmp_path, source):
    load_fashion_mnist(source, train=False)
    torch.save((torch.zeros(20, 1, 28, 28, dtype=torch.uint8), torch.zeros(20, dtype=torch.int64)),
               the_copy(tmp_path))
    for p in source.iterdir():
        p.unlink()
    with pytest.raises(DatasetError) as info:
        load_fashion_mnist(source, train=False)
    assert "\n" not in str(info.value) and "Fashion-MNIST file not found" in str(info.value)
    with pytest.raises(DatasetError, match="cannot read the dataset file"):  # any loader: the key needs them
        cached("fashion-mnist-test", [source / "t10k-images-idx3-ubyte.gz"], lambda: None)

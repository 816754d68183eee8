"""A decoded copy of file-based datasets, so every rank of every run does not unzip them again.

The copy is keyed by the source files' paths, sizes and modification times; a changed source
makes a new key. Written atomically, with a hash of its content beside it (NAME.pt.blake2b): a copy
whose content no longer matches that hash (images overwritten in place, a torn disk block) or that
no longer loads is rebuilt from the source files, with one line saying so, instead of training on
it. Set DSGD_CACHE_DIR to move it (default ~/.cache/dsgd), or DSGD_CACHE_DIR="" to turn it off.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch

from dsgd.data.errors import DatasetError

Tensors = tuple[torch.Tensor, torch.Tensor]
DIGEST_SUFFIX = ".blake2b"


def cache_dir() -> Path | None:
    value = os.environ.get("DSGD_CACHE_DIR", str(Path.home() / ".cache" / "dsgd"))
    return Path(value) if value else None


def cached(name: str, sources: Sequence[Path], load: Callable[[], Tensors]) -> Tensors:
    """load() once per set of source files; later calls read the decoded tensors back, once their
    content matches the hash written with them."""
    root = cache_dir()
    if root is None:
        return load()
    path = root / f"{name}-{_source_key(sources)}.pt"
    found, problem = _read(path)
    if found is not None:
        return found
    images, labels = load()
    if problem:
        print(f"dsgd.data: the decoded copy {path} {problem}: rebuilt it from {', '.join(map(str, sources))}",
              file=sys.stderr, flush=True)
    _write(path, (images, labels))
    return images, labels


def content_digest(tensors: Sequence[torch.Tensor]) -> str:
    """A hash of the tensors' dtypes, shapes and bytes: what a run trains on, however it was saved."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}|{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")
    return h.hexdigest()


def _source_key(sources: Sequence[Path]) -> str:
    key = hashlib.blake2b(digest_size=12)
    for p in sources:
        try:
            st = Path(p).stat()
        except OSError as e:
            raise DatasetError(f"{p}: cannot read the dataset file ({e.strerror})") from None
        key.update(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
    return key.hexdigest()


def _read(path: Path) -> tuple[Tensors | None, str]:
    """(the cached tensors, "") when the copy is whole; (None, what is wrong) when it must be rebuilt
    ("" for a copy not there, or written by a version that kept no hash: nothing to report)."""
    digest_path = path.with_name(path.name + DIGEST_SUFFIX)
    if not path.is_file() or not digest_path.is_file():
        return None, ""
    try:
        images, labels = torch.load(path, weights_only=True, mmap=True)
    except Exception as e:
        return None, f"does not load ({type(e).__name__})"
    try:
        expected = digest_path.read_text().strip()
    except OSError:
        return None, ""
    if content_digest((images, labels)) != expected:
        return None, "does not match its content hash (it was changed after it was written)"
    return (images, labels), ""


def _write(path: Path, tensors: Tensors) -> None:
    """The copy, then its hash, each through a temporary file of this process: ranks writing the same
    copy at once each replace it whole, with the same content and so the same hash."""
    digest = content_digest(tensors)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save(tensors, tmp)
        os.replace(tmp, path)
        digest_path = path.with_name(path.name + DIGEST_SUFFIX)
        digest_tmp = digest_path.with_name(f"{digest_path.name}.{os.getpid()}.tmp")
        digest_tmp.write_text(digest + "\n")
        os.replace(digest_tmp, digest_path)
    except OSError:
        pass  # a read-only home still trains, only slower to start

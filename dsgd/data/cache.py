"""A decoded copy of file-based datasets, so every rank of every run does not unzip them again.

The copy is keyed by the source files' paths, sizes and modification times; a changed source
makes a new key. Written atomically; an unreadable copy is ignored and rebuilt.
Set DSGD_CACHE_DIR to move it (default ~/.cache/dsgd), or DSGD_CACHE_DIR="" to turn it off.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

import torch


def cache_dir() -> Path | None:
    value = os.environ.get("DSGD_CACHE_DIR", str(Path.home() / ".cache" / "dsgd"))
    return Path(value) if value else None


def cached(name: str, sources: Sequence[Path], load: Callable[[], tuple[torch.Tensor, torch.Tensor]]):
    """load() once per set of source files; later calls read the decoded tensors back."""
    root = cache_dir()
    if root is None:
        return load()
    key = hashlib.blake2b(digest_size=12)
    for p in sources:
        st = Path(p).stat()
        key.update(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
    path = root / f"{name}-{key.hexdigest()}.pt"
    if path.is_file():
        try:
            images, labels = torch.load(path, weights_only=True, mmap=True)
            return images, labels
        except Exception:  # a damaged copy is rebuilt from the sources
            pass
    images, labels = load()
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save((images, labels), tmp)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home still trains, only slower to start
    return images, labels

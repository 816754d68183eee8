"""A real English text corpus that installs offline: the Debian package `fortunes` (the fortune
program's quotations, about 2.7 MB of text in /usr/share/games/fortunes), read as bytes for byte-level
language models (a vocabulary of 256)."""
from __future__ import annotations

from pathlib import Path

import torch

from dsgd.data.errors import DatasetError

FORTUNES = Path("/usr/share/games/fortunes")


def load_fortunes(directory: str | Path | None = None, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) byte streams, uint8: every fortune file (sorted by name) joined, the last
    VAL_FRACTION of the stream held out."""
    d = Path(directory) if directory is not None else FORTUNES
    files = sorted(p for p in d.glob("*") if p.is_file() and not p.name.endswith((".dat", ".u8"))) if d.is_dir() else []
    if not files:
        raise DatasetError(f"no fortune files in {d}: install the Debian package fortunes (apt-get install fortunes)")
    data = torch.frombuffer(bytearray(b"".join(p.read_bytes() for p in files)), dtype=torch.uint8)
    cut = int(len(data) * (1 - val_fraction))
    return data[:cut].clone(), data[cut:].clone()

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


DEFAULT_CONTEXT = 64  # bytes a model reads per sample


class TokenStream:
    """A text split as training samples: sample i is the window tokens[i*T : i*T + T] and its targets
    the same window one token later (T = context), so the samples tile the text without overlap and
    every sampler and partition over sample indices works unchanged.

    Example:
        >>> s = TokenStream("t", torch.arange(10, dtype=torch.uint8), context=3)
        >>> len(s), s.take(torch.tensor([1]), "cpu")[0].tolist(), s.take(torch.tensor([1]), "cpu")[1].tolist()
        (3, [[3, 4, 5]], [[4, 5, 6]])
    """

    task = "next-token"
    labels = None  # no class per sample: partitions by label do not apply

    def __init__(self, name: str, tokens: torch.Tensor, context: int = DEFAULT_CONTEXT, vocabulary: int = 256):
        if context < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        if len(tokens) < context + 1:
            raise ValueError(f"the {name} text has {len(tokens)} tokens, too few for one sample of {context} "
                             f"and its next token")
        self.name, self.tokens, self.context, self.num_classes = name, tokens, context, vocabulary
        self._offsets = torch.arange(context + 1)

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.context

    def take(self, idx, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, next tokens), int64 (N, context) each."""
        if isinstance(idx, slice):
            idx = torch.arange(*idx.indices(len(self)))
        windows = self.tokens[idx.reshape(-1, 1) * self.context + self._offsets].long()
        return windows[:, :-1].to(device), windows[:, 1:].to(device)

    def draw(self, idx, seed, worker, step, augment, label_noise, device):
        """Text has no augmentation or label noise (the run's settings refuse them): the windows as they are."""
        return self.take(idx, device)

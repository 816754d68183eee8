"""Random generators derived from (seed, purpose, worker, step) keys.

Every random draw in the data pipeline comes from a fresh generator whose seed is
a hash of the run seed and a few keys naming what the draw is for. Draws are
therefore pure functions of their keys: a run resumes bit-exactly from the step
number alone, and a worker's data does not depend on which process hosts it.
"""
from __future__ import annotations

import hashlib

import torch

# torch.Generator.manual_seed accepts any 64-bit value; 63 bits keeps it positive.
_SEED_MASK = (1 << 63) - 1


def _encode(key: int | str) -> bytes:
    # Tag each key with its type and length so ("a", 1) and ("a1",) never collide.
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise TypeError(f"rng keys must be int or str, got {type(key).__name__}: {key!r}")
    text = str(key)
    tag = "i" if isinstance(key, int) else "s"
    return f"{tag}{len(text)}:{text}".encode()


def derive_seed(seed: int, *keys: int | str) -> int:
    """Hash a run seed and keys into a 63-bit seed, identical on every platform.

    Args:
        seed: the run seed.
        keys: ints and strings naming the purpose of the draw, e.g. ("perm", epoch).

    Example:
        >>> derive_seed(0, "draw", 3, 17) == derive_seed(0, "draw", 3, 17)
        True
    """
    h = hashlib.blake2b(digest_size=8, person=b"dsgd.rng")
    for key in (seed, *keys):
        h.update(_encode(key))
    return int.from_bytes(h.digest(), "little") & _SEED_MASK


def generator(seed: int, *keys: int | str) -> torch.Generator:
    """A CPU torch.Generator seeded from derive_seed(seed, *keys).

    Draws are made on the CPU and moved to the target device afterwards, so the
    same keys give the same numbers whatever device the data ends up on.

    Example:
        >>> g = generator(0, "perm", 0)
        >>> torch.randperm(5, generator=g).shape
        torch.Size([5])
    """
    g = torch.Generator(device="cpu")
    g.manual_seed(derive_seed(seed, *keys))
    return g

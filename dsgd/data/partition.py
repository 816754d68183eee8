"""Fixed, label-skewed splits of the training set over workers: each sample on exactly one worker.

A partition spec is `iid` (no fixed parts: every worker samples the whole set, the default),
`dirichlet:alpha=A`, `shards:k=K` or `sorted`. `split` is pure numpy: a function of the labels,
the number of workers, the spec and the seed only, so every rank computes the same parts and a
resumed run gets them back without saving them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dsgd.data.rng import derive_seed

KNOWN = "iid, dirichlet:alpha=A, shards:k=K, sorted"


@dataclass(frozen=True)
class PartitionSpec:
    """A parsed --partition value; `alpha` is set for dirichlet only, `k` for shards only."""

    name: str
    alpha: float | None = None
    k: int | None = None

    def __str__(self) -> str:
        if self.name == "dirichlet":
            return f"dirichlet:alpha={self.alpha:g}"
        if self.name == "shards":
            return f"shards:k={self.k}"
        return self.name


def parse_partition(spec: str) -> PartitionSpec:
    """`iid`, `dirichlet:alpha=0.1`, `shards:k=2`, `sorted`. ValueError names the problem."""
    from topologies.options import split_spec
    name, options = split_spec(str(spec), "partition")
    wanted = {"iid": (), "sorted": (), "dirichlet": ("alpha",), "shards": ("k",)}
    if name not in wanted:
        raise ValueError(f"unknown partition {name!r} (known: {KNOWN})")
    extra = sorted(set(options) - set(wanted[name]))
    if extra:
        raise ValueError(f"partition {name} takes no option {extra[0]!r}")
    missing = [key for key in wanted[name] if key not in options]
    if missing:
        raise ValueError(f"partition {name} needs {missing[0]}=..., e.g. "
                         f"{'dirichlet:alpha=0.1' if name == 'dirichlet' else 'shards:k=2'}")
    if name == "dirichlet":
        try:
            alpha = float(options["alpha"])
        except ValueError:
            raise ValueError(f"dirichlet alpha must be a number, got {options['alpha']!r}") from None
        if not (alpha > 0 and math.isfinite(alpha)):
            raise ValueError(f"dirichlet alpha must be > 0 (and finite), got {alpha:g}")
        return PartitionSpec(name, alpha=alpha)
    if name == "shards":
        try:
            k = int(options["k"])
        except ValueError:
            raise ValueError(f"shards k must be an integer, got {options['k']!r}") from None
        if k < 1:
            raise ValueError(f"shards k must be >= 1, got {k}")
        return PartitionSpec(name, k=k)
    return PartitionSpec(name)


def split(labels: np.ndarray, n_workers: int, spec: PartitionSpec, seed: int,
          num_classes: int) -> list[np.ndarray]:
    """The sorted sample indices of each worker: disjoint, together all of 0..N-1, none empty.

    - dirichlet: for each class, a draw p ~ Dir(alpha, ..., alpha) over the workers splits that
      class's (shuffled) samples in proportions p (cut points rounded). A worker left with no
      sample then takes one, chosen at random, from the largest part (ties: the lowest worker),
      in worker order: the only change made to the draw.
    - shards: the indices sorted by label (stable) are cut into n * k contiguous shards whose
      sizes differ by at most one; a random permutation of the shards gives each worker k.
    - sorted: the indices sorted by label (stable) cut into n contiguous parts (no randomness).

    Raises:
        ValueError: the spec is iid (no fixed parts), shards k exceeds num_classes, or some
            worker would be empty (fewer samples, or shards, than workers).
    """
    labels = np.asarray(labels)
    N = len(labels)
    if n_workers < 1:
        raise ValueError(f"need n_workers >= 1, got {n_workers}")
    if spec.name == "iid":
        raise ValueError("iid has no fixed parts: every worker samples the whole training set")
    rng = np.random.default_rng(derive_seed(seed, "partition", spec.name))
    if spec.name == "dirichlet":
        if N < n_workers:
            raise ValueError(f"{N} samples leave some of the {n_workers} workers empty")
        return _dirichlet(labels, n_workers, spec.alpha, num_classes, rng)
    by_label = np.argsort(labels, kind="stable")
    if spec.name == "sorted":
        if N < n_workers:
            raise ValueError(f"{N} samples leave some of the {n_workers} workers empty")
        return [np.sort(p) for p in np.array_split(by_label, n_workers)]
    if spec.name == "shards":
        k = spec.k
        if k > num_classes:
            raise ValueError(f"shards k={k} is more than the {num_classes} classes")
        if N < n_workers * k:
            raise ValueError(f"{n_workers} workers x k={k} shards = {n_workers * k} shards but only {N} "
                             f"samples: some shards, and workers, would be empty")
        shards = np.array_split(by_label, n_workers * k)
        order = rng.permutation(n_workers * k)
        return [np.sort(np.concatenate([shards[s] for s in order[i * k:(i + 1) * k]])) for i in range(n_workers)]
    raise ValueError(f"unknown partition {spec.name!r} (known: {KNOWN})")


def _dirichlet(labels, n, alpha, num_classes, rng) -> list[np.ndarray]:
    pieces: list[list[np.ndarray]] = [[] for _ in range(n)]
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        rng.shuffle(members)
        p = rng.dirichlet(np.full(n, alpha))
        cuts = np.clip(np.round(np.cumsum(p)[:-1] * len(members)).astype(np.int64), 0, len(members))
        for i, chunk in enumerate(np.split(members, cuts)):
            pieces[i].append(chunk)
    parts = [np.concatenate(p) for p in pieces]
    for i in range(n):
        if len(parts[i]) == 0:  # someone holds >= 2 samples, since N >= n
            donor = int(np.argmax([len(p) for p in parts]))
            j = int(rng.integers(len(parts[donor])))
            parts[i] = parts[donor][j:j + 1]
            parts[donor] = np.delete(parts[donor], j)
    return [np.sort(p) for p in parts]


def class_histogram(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    """workers x classes sample counts (int64)."""
    labels = np.asarray(labels)
    return np.stack([np.bincount(labels[p], minlength=num_classes)[:num_classes] for p in parts]).astype(np.int64)

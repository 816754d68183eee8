"""The contract every communicator meets, and what it counts."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, asdict
from typing import Protocol, Sequence

import torch


@dataclass
class CommStats:
    """Traffic of this rank: bytes handed to the network layer, messages, and seconds spent in it."""

    bytes_sent: int = 0
    bytes_recv: int = 0
    messages: int = 0
    allreduce_bytes: int = 0   # payload handed to allreduce (the algorithm's real volume is the library's)
    comm_s: float = 0.0
    steps: dict = field(default_factory=lambda: {"identity": 0, "average": 0, "sparse": 0})

    def count_step(self, kind: str) -> None:
        self.steps[kind] = self.steps.get(kind, 0) + 1

    def as_dict(self) -> dict:
        return asdict(self)

    def load(self, d: dict) -> None:
        for k, v in d.items():
            setattr(self, k, v)


def mean_stats(per_rank: list[dict]) -> dict:
    """The mean over ranks of saved CommStats (integers rounded down), keyed like as_dict()."""
    def mean(values):
        if isinstance(values[0], dict):
            return {k: mean([v[k] for v in values]) for k in values[0]}
        m = sum(values) / len(values)
        return int(m) if isinstance(values[0], int) else m
    return mean(per_rank)


class Request(Protocol):
    def wait(self) -> None: ...

    def test(self) -> bool:
        """Complete without blocking if everything has arrived; whether it is complete."""


class Communicator(Protocol):
    """Rank-level transport. Mixers decide what to move; communicators only move it."""

    rank: int
    size: int
    stats: CommStats

    def allreduce_sum_(self, buf: torch.Tensor) -> None:
        """Blocking in-place sum of `buf` over all ranks."""

    def iallreduce_sum(self, buf: torch.Tensor, blocking: bool = False) -> Request:
        """Start an in-place sum of `buf` over all ranks (blocking: finish it before returning)."""

    def iexchange(self, sends: Sequence[tuple[int, torch.Tensor]],
                  recvs: Sequence[tuple[int, torch.Tensor]], tag: int = 0) -> Request:
        """Post every send and receive before returning; wait() completes them all."""

    def allreduce_floats(self, values: Sequence[float]) -> list[float]:
        """Blocking sum of a few float64 scalars (metrics); not counted as training traffic."""

    def allreduce_max(self, value: float) -> float:
        """Blocking maximum of one float over all ranks (agreeing on a failure)."""

    def allgather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's (K, P) rows (compressed payloads), stacked in rank order: (size * K, P)."""

    def allgather_object(self, obj) -> list:
        """Every rank's picklable `obj`, in rank order (agreeing on setup errors)."""

    def split(self, color: int, key: int) -> "Communicator":
        """The ranks of my color, ordered by key, as their own communicator (collective: every rank
        calls it); its traffic counts in this communicator's stats."""

    def barrier(self) -> None: ...


class Done:
    """A request that is already complete."""

    def wait(self) -> None:
        return None

    def test(self) -> bool:
        return True


class Timer:
    """Adds wall seconds spent inside `with` to stats.comm_s."""

    def __init__(self, stats: CommStats):
        self.stats = stats

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.stats.comm_s += time.perf_counter() - self.t0

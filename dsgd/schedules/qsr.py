"""The quadratic synchronization rule (Gu et al. 2024): the period grows as the learning rate falls.

At the start of each round, H = max(H_base, floor((alpha / lr)^p)), never longer than the steps
that remain; during warmup (or with alpha = 0) H = H_base. p = 2 is QSR, p = 1 the linear rule.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Callable

from .base import Action, uniform


@dataclass(frozen=True)
class QSR:
    n_workers: int
    base_local_steps: int
    alpha: float
    lr: Callable[[int], float]
    total_steps: int
    warmup_steps: int = 0
    power: float = 2.0
    _round_starts: list = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self):
        if self.base_local_steps < 1:
            raise ValueError(f"QSR base local steps must be >= 1, got {self.base_local_steps}")
        if self.alpha < 0:
            raise ValueError(f"QSR alpha must be >= 0, got {self.alpha}")

    def period_at(self, t: int) -> int:
        """H chosen by a round that starts at step t."""
        H, remaining = self.base_local_steps, self.total_steps - t
        if self.alpha > 0 and t >= self.warmup_steps:
            lr = self.lr(t)
            try:
                ratio = (self.alpha / lr) ** self.power if lr > 0 else math.inf
            except OverflowError:  # alpha far above the learning rate: the round takes every step left
                ratio = math.inf
            # 1e-9 relative slack: (0.1 / (0.1 * 0.1))^2 is 99.99999999999997 in floats, meant as 100
            H = remaining if ratio >= remaining else max(H, math.floor(ratio * (1 + 1e-9)))
        return max(1, min(H, remaining))

    def round_of(self, step: int) -> tuple[int, int]:
        """(start, H) of the round containing `step`; rounds are built once, in order."""
        starts = self._round_starts
        if not starts:
            starts.append(0)
        while starts[-1] <= step:
            starts.append(starts[-1] + self.period_at(starts[-1]))
        i = bisect.bisect_right(starts, step) - 1
        return starts[i], starts[i + 1] - starts[i]

    def state_dict(self) -> dict:
        """The rounds decided so far: each was decided by the learning rate at its start, which a
        resumed run (whose scheduler only knows the present) cannot ask again."""
        return {"round_starts": list(self._round_starts)}

    def load_state_dict(self, state: dict) -> None:
        self._round_starts[:] = [int(s) for s in state["round_starts"]]

    def action(self, step: int) -> Action:
        start, H = self.round_of(step)
        sync = step == start + H - 1
        return Action(param_W=uniform(self.n_workers) if sync else None, sync=sync, local_steps=H)

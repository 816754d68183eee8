"""Learning rate as a pure function of the step: linear warmup, then step or cosine decay."""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LRSchedule:
    """lr(t) for t = 0 .. total_steps - 1.

    Warmup ramps linearly from start_lr to max_lr over warmup_steps (Goyal et al. 2017);
    after it, "step" multiplies by gamma at each milestone step, "cosine" decays to final_lr,
    "constant" keeps max_lr.
    """

    max_lr: float
    total_steps: int
    warmup_steps: int = 0
    start_lr: float = 0.0
    decay: str = "step"
    milestones: tuple[int, ...] = field(default_factory=tuple)
    gamma: float = 0.1
    final_lr: float = 0.0

    def __post_init__(self):
        if self.max_lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.max_lr}")
        if self.decay not in ("step", "cosine", "constant"):
            raise ValueError(f"lr decay must be step, cosine or constant, got {self.decay!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup must be >= 0 steps, got {self.warmup_steps}")

    def __call__(self, t: int) -> float:
        if t < self.warmup_steps:
            return self.start_lr + (self.max_lr - self.start_lr) * (t + 1) / self.warmup_steps
        if self.decay == "step":
            return self.max_lr * self.gamma ** sum(1 for m in self.milestones if t >= m)
        if self.decay == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            frac = min(1.0, (t - self.warmup_steps) / span)
            return self.final_lr + 0.5 * (self.max_lr - self.final_lr) * (1 + math.cos(math.pi * frac))
        return self.max_lr

    @property
    def decay_points(self) -> tuple[int, ...]:
        """Steps at which a step decay takes effect (phase boundaries, checkpoint points)."""
        if self.decay != "step":
            return ()
        return tuple(sorted(m for m in self.milestones if 0 < m < self.total_steps))

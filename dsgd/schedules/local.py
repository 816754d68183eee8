"""Local SGD and post-local SGD: exact averaging of the parameters every H steps.

Local SGD: Stich 2019, Lin et al. 2020. Post-local SGD (Lin et al. 2020) runs parallel SGD
until a switch step, local SGD after it; Gu et al. 2023 generalize it to phases, each with
its own H, bounded by the learning-rate decay points.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import Action, uniform


@dataclass(frozen=True)
class LocalSGD:
    """Average parameters after every `local_steps` steps.

    The period does not depend on the run's length, so extending a run does not change its past.
    """

    n_workers: int
    local_steps: int
    total_steps: int

    def __post_init__(self):
        if self.local_steps < 1:
            raise ValueError(f"local steps H must be >= 1, got {self.local_steps}")

    def action(self, step: int) -> Action:
        H = self.local_steps
        sync = (step + 1) % H == 0
        return Action(param_W=uniform(self.n_workers) if sync else None, sync=sync, local_steps=H)


@dataclass(frozen=True)
class PostLocalSGD:
    """Phases [starts[k], starts[k+1]) with period periods[k]; H = 1 means parallel SGD.

    Rounds are counted from each phase's start, and every phase but the last ends with an
    average, so each phase (and each LR decay checkpoint) begins from identical workers.
    """

    n_workers: int
    starts: tuple[int, ...]
    periods: tuple[int, ...]
    total_steps: int

    def __post_init__(self):
        if len(self.starts) != len(self.periods) or not self.starts or self.starts[0] != 0:
            raise ValueError("post-local SGD needs one period per phase and a first phase starting at step 0")
        if any(b <= a for a, b in zip(self.starts, self.starts[1:])):
            raise ValueError(f"post-local SGD phase starts must increase, got {self.starts}")
        if any(h < 1 for h in self.periods):
            raise ValueError(f"local steps H must be >= 1 in every phase, got {self.periods}")

    def phase(self, step: int) -> int:
        return sum(1 for s in self.starts[1:] if step >= s)

    def action(self, step: int) -> Action:
        k = self.phase(step)
        H = self.periods[k]
        if H == 1:
            return Action(grad_W=uniform(self.n_workers), sync=True, local_steps=1, phase=k)
        phase_end = self.starts[k + 1] if k + 1 < len(self.starts) else None
        sync = (step - self.starts[k] + 1) % H == 0 or step + 1 == phase_end
        return Action(param_W=uniform(self.n_workers) if sync else None, sync=sync, local_steps=H, phase=k)

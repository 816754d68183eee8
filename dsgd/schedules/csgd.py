"""Parallel (mini-batch) SGD: gradients averaged every step, so all workers stay identical."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Action, uniform


@dataclass(frozen=True)
class ParallelSGD:
    """C-SGD. Averaging gradients (not parameters) keeps momentum buffers identical too."""

    n_workers: int

    def action(self, step: int) -> Action:
        return Action(grad_W=uniform(self.n_workers), sync=True, local_steps=1)

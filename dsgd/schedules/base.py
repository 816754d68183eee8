"""What a schedule says at each step: whether to mix, what, and with which W.

Schedules are pure: the action at step t depends only on t (and on the learning-rate
schedule, itself a pure function of t), so a resumed run needs no schedule state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np

from topologies import steps


@dataclass(frozen=True)
class Action:
    """One step's communication.

    grad_W:  mix the gradients with this W before the optimizer step (parallel SGD).
    param_W: mix the parameters with this W.
    Both are `topologies.steps` objects (a cheap key and each node's rows and columns; the dense
    matrix on np.asarray), or dense matrices.
    combine_first: mix the parameters after the gradient is taken but before the update
        (combine-then-adapt); otherwise after the update (adapt-then-combine).
    sync: this step ends a global averaging round.
    local_steps: the period H in force at this step (for metrics).
    phase: index of the schedule phase (post-local SGD), 0 otherwise.
    """

    grad_W: Optional[np.ndarray] = None
    param_W: Optional[np.ndarray] = None
    combine_first: bool = False
    sync: bool = False
    local_steps: int = 1
    phase: int = 0

    @property
    def communicates(self) -> bool:
        return self.grad_W is not None or self.param_W is not None


class Schedule(Protocol):
    n_workers: int

    def action(self, step: int) -> Action: ...


def mixing_step(topology, t: int):
    """W(t) of a topology as its step object (`Topology.step`), or as the matrix W(t) for a
    topology-like object that only has W (a user's own, a test's)."""
    step = getattr(topology, "step", None)
    return step(t) if step is not None else topology.W(t)


def uniform(n: int) -> steps.Average:
    """J = (1/n) 1 1^T: exact averaging (a step object; np.asarray gives the matrix)."""
    return steps.average(n)

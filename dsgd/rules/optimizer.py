"""The seed algorithms as one rule: the local optimizer steps, the schedule says what to mix around it.

C-SGD mixes gradients with J before the step; local SGD, post-local SGD and QSR mix parameters
with J on their sync steps; D-SGD mixes parameters with the graph's W(t), after the step (ATC)
or before it (CTA), optionally leaving the exchange in flight during the next forward/backward.
"""
from __future__ import annotations

from .base import Rule


class OptimizerRule(Rule):
    """Args: schedule (csgd, local, postlocal, qsr or gossip); overlap: return ATC mixes unfinished."""

    def __init__(self, schedule, overlap: bool = False):
        self.schedule, self.overlap = schedule, overlap

    def step(self, t, engine):
        act = self.schedule.action(t)
        if act.grad_W is not None:
            engine.mix(act.grad_W, engine.grads)
        if act.param_W is not None and act.combine_first:
            engine.mix_model(act.param_W)
        engine.optimizer_step()
        if act.param_W is not None and not act.combine_first:
            return engine.mix_model(act.param_W, start_only=self.overlap)
        return None

"""Push-sum / Stochastic Gradient Push (Nedic and Olshevsky 2016; Assran et al., ICML 2019).

On a directed graph the mixing matrix P is only column-stochastic, so plain mixing drifts to a
weighted average. Each worker carries a weight w (start 1) through the same mixing and works
with the de-biased z = x / w:

    x <- mix(x - eta g(z), P);  w <- mix(w, P);  z = x / w

The workers' parameters hold z (gradients and evaluation see it); the rule keeps the numerator x
and the weight w, which travel in one exchange. sum_i x_i and sum_i w_i are preserved.
"""
from __future__ import annotations

from .base import Rule, copies


class PushSum(Rule):
    buffer_names = ("x", "w")

    def __init__(self, schedule):
        self.schedule = schedule

    def attach(self, engine):
        self.x = copies(engine.params)  # w = 1: the numerator starts as the model itself
        self.w = engine.new_scalars(1.0)

    def step(self, t, engine):
        g = engine.decayed_gradients()
        eta = engine.lr(t)
        for x, g_t in zip(self.x, g):
            x.sub_(g_t * eta)
        P = self.action(t).param_W
        if P is not None:
            engine.mix(P, [*self.x, *self.w])
        (w,) = self.w
        for z, x in zip(engine.params, self.x):
            z.copy_(x / w.to(x.dtype))
        return None

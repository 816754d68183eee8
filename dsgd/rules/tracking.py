"""Gradient tracking, adapt-then-combine (Nedic, Olshevsky, Shi 2017; Pu and Nedic 2021).

Each worker keeps a tracker y of the average gradient and its previous gradient:

    start:  y = g(x^0)
    step:   x <- mix(x - eta * y, W);  y <- mix(y, W) + g(x_new) - g_prev

x and y are mixed together (one exchange). The correction with the new gradient is applied at
the next step, when that gradient exists; after it sum_i y_i == sum_i g_prev_i.
"""
from __future__ import annotations

from .base import Rule


class GradientTracking(Rule):
    buffer_names = ("y", "g_prev")
    scalar_names = ("started",)

    def __init__(self, schedule):
        self.schedule, self.started = schedule, False

    def attach(self, engine):
        self.y, self.g_prev = engine.new_buffers(), engine.new_buffers()

    def step(self, t, engine):
        g = engine.decayed_gradients()
        for y, g_prev, g_new in zip(self.y, self.g_prev, g):
            if self.started:
                y.add_(g_new).sub_(g_prev)  # the mixed tracker, corrected by the gradient change
            else:
                y.copy_(g_new)
            g_prev.copy_(g_new)
        self.started = True
        eta = engine.lr(t)
        for x, y in zip(engine.params, self.y):
            x.sub_(y * eta)
        W = self.action(t).param_W
        if W is not None:
            engine.mix_model(W, extra=self.y)
        return None

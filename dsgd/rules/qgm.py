"""Quasi-global momentum (Lin, Karimireddy, Stich, Jaggi, ICML 2021).

Momentum built from the mixed progress of the model, not from the local gradients, so that on
heterogeneous data it does not pull each worker toward its own optimum:

    d = g + beta m_hat                 (Nesterov: d = g + beta (beta m_hat + g))
    x_new = mix(x - eta d, W)
    m_hat <- mu m_hat + (1 - mu) (x - x_new) / eta

g includes weight decay. A step with eta = 0 (the first warmup step from start-lr 0) leaves
m_hat as it is: it carries no progress to learn from.
"""
from __future__ import annotations

from .base import Rule


class QuasiGlobalMomentum(Rule):
    buffer_names = ("m_hat",)

    def __init__(self, schedule, beta: float, mu: float, nesterov: bool = False):
        self.schedule, self.beta, self.mu, self.nesterov = schedule, beta, mu, nesterov

    def attach(self, engine):
        self.m_hat = engine.new_buffers()

    def step(self, t, engine):
        g = engine.decayed_gradients()
        eta = engine.lr(t)
        old = []
        for x, m, g_t in zip(engine.params, self.m_hat, g):
            d = g_t + m * self.beta
            if self.nesterov:
                d = g_t + (m * self.beta + g_t) * self.beta
            old.append(x.clone())
            x.sub_(d * eta)
        W = self.action(t).param_W
        if W is not None:
            engine.mix_model(W)
        if eta != 0:
            for x, m, x_old in zip(engine.params, self.m_hat, old):
                m.mul_(self.mu).add_((x_old - x) / eta * (1 - self.mu))
        return None

"""D^2 (Tang et al. 2018) and exact diffusion (Yuan et al. 2019): one recursion, two matrices.

    first step:  x^1     = mix(x^0 - eta g^0, M)
    then:        x^{t+1} = mix(2 x^t - x^{t-1} - eta_t g^t + eta_{t-1} g^{t-1}, M)

D^2 uses M = W and needs W's eigenvalues above -1/3; exact diffusion uses M = (I + W) / 2,
which always qualifies. State: the previous parameters and the previous eta * g.
"""
from __future__ import annotations

import numpy as np

from topologies.steps import is_step

from .base import Rule

D2_EIGENVALUE_BOUND = -1.0 / 3.0


def smallest_eigenvalue(W: np.ndarray) -> float:
    """The smallest real part of W's eigenvalues."""
    return float(np.min(np.linalg.eigvals(np.asarray(W, dtype=np.float64)).real))


def halfway(W):
    """W_bar = (I + W) / 2 (of a step: a step, built once and cached with it)."""
    if is_step(W):
        return W.halfway()
    return 0.5 * (np.eye(W.shape[0]) + W)


class Diffusion(Rule):
    buffer_names = ("x_prev", "eta_g_prev")
    scalar_names = ("started",)

    def __init__(self, schedule, exact: bool):
        self.schedule, self.exact, self.started = schedule, exact, False

    def attach(self, engine):
        self.x_prev, self.eta_g_prev = engine.new_buffers(), engine.new_buffers()

    def step(self, t, engine):
        g = engine.decayed_gradients()
        eta = engine.lr(t)
        for x, x_prev, eta_g_prev, g_t in zip(engine.params, self.x_prev, self.eta_g_prev, g):
            eta_g = g_t * eta
            old = x.clone()
            if self.started:
                x.mul_(2).sub_(x_prev).sub_(eta_g).add_(eta_g_prev)
            else:
                x.sub_(eta_g)
            x_prev.copy_(old)
            eta_g_prev.copy_(eta_g)
        self.started = True
        W = self.action(t).param_W
        if W is not None:
            engine.mix_model(halfway(W) if self.exact else W)
        return None

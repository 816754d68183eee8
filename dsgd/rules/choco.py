"""CHOCO-SGD: gossip of compressed differences with a public copy (Koloskova, Stich, Jaggi, ICML 2019).

Each worker keeps x_hat (its public copy, which its neighbours know too) and s = sum_j W[i, j] x_hat_j,
so it never stores a neighbour's copy. gamma is the consensus step; only q travels, compressed:

    x_half = x - eta g
    q      = Q(x_half - x_hat)              (decoded: the value every receiver reconstructs)
    x_hat <- x_hat + q;   s <- s + mix(q, W)
    x     <- x_half + gamma (s - x_hat)

On steps the schedule does not gossip, x = x_half. With the identity codec and gamma = 1 this is
plain gossip: x <- W (x - eta g).

A time-varying graph with matrices W_0..W_{p-1} keeps one accumulator s_k = W_k x_hat per matrix,
all updated from the same q (which then travels over the union of the p graphs), and step t uses
the s_k of its own W: the identity holds for every W_t, not only a static one.
"""
from __future__ import annotations

import numpy as np

from ..schedules.base import mixing_step
from .base import Rule


class Choco(Rule):
    buffer_names = ("x_hat", "s")

    def __init__(self, schedule, codec, gamma: float, seed: int):
        self.schedule, self.codec, self.gamma, self.seed = schedule, codec, gamma, seed
        topo = schedule.topology
        self.matrices = [topo.W(k) for k in range(topo.period)]
        self.steps = [mixing_step(topo, k) for k in range(topo.period)]

    def attach(self, engine):
        self.x_hat = engine.new_buffers()
        self.buckets = len(self.x_hat)
        self.s = [b for _ in self.matrices for b in engine.new_buffers()]  # s_k for W_k, bucket by bucket

    def _which(self, W) -> int:
        for k, (M, S) in enumerate(zip(self.matrices, self.steps)):
            if M is W or S is W or (getattr(W, "key", None) == S.key):
                return k
        for k, M in enumerate(self.matrices):
            if np.array_equal(M, np.asarray(W)):
                return k
        raise ValueError("choco was given a matrix outside its topology's period")

    def step(self, t, engine):
        g = engine.decayed_gradients()
        eta = engine.lr(t)
        for x, g_t in zip(engine.params, g):
            x.sub_(g_t * eta)
        W = self.action(t).param_W
        if W is None:
            return None
        now = self._which(W)
        diff = [x - x_hat for x, x_hat in zip(engine.params, self.x_hat)]
        q, mixed = engine.compressed_many(self.matrices, diff, self.codec, self.seed, t)
        for x_hat, q_i in zip(self.x_hat, q):
            x_hat.add_(q_i)
        for k, mixed_k in enumerate(mixed):
            for s, m_i in zip(self.s[k * self.buckets:(k + 1) * self.buckets], mixed_k):
                s.add_(m_i)
        for x, x_hat, s in zip(engine.params, self.x_hat, self.s[now * self.buckets:(now + 1) * self.buckets]):
            x.add_((s - x_hat) * self.gamma)
        if engine.mix_buffers:
            engine.mix_statistics(W)
        return None

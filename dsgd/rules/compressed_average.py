"""Error-feedback compressed averaging for C-SGD and local SGD (Seide et al. 2014; Karimireddy et al. 2019).

Each worker keeps what compression has not yet delivered, e, and adds it to what it sends next:

    e <- e + v;   c = Q(e);   e <- e - c;   v_avg = mean_j c_j

C-SGD (gradients averaged every step): v is the gradient, and the optimizer steps on v_avg.
Local SGD, post-local SGD, QSR (parameters averaged on sync steps): v is the change of the model
since the last sync, and the model becomes x_sync + v_avg. Averages of payloads are allgathered
and decoded in worker order, so every worker holds the same average; payloads that add as float32
values (random-k with shared indices) take one allreduce instead.
"""
from __future__ import annotations

from .base import Rule, copies


class CompressedAveraging(Rule):
    buffer_names = ("e_grad", "e_model", "x_sync")

    def __init__(self, schedule, codec, seed: int):
        self.schedule, self.codec, self.seed = schedule, codec, seed

    def attach(self, engine):
        self.e_grad, self.e_model = engine.new_buffers(), engine.new_buffers()
        self.x_sync = copies(engine.params)

    def _average_(self, engine, W, v, memory, t):
        """v <- the average of the compressed (v + memory), memory <- what compression left out."""
        for e, v_i in zip(memory, v):
            e.add_(v_i)
        sent, average = engine.compressed(W, memory, self.codec, self.seed, t)
        for e, c, v_i, a in zip(memory, sent, v, average):
            e.sub_(c)
            v_i.copy_(a)

    def step(self, t, engine):
        act = self.schedule.action(t)
        if act.grad_W is not None:
            self._average_(engine, act.grad_W, engine.grads, self.e_grad, t)
        engine.optimizer_step()
        if act.param_W is not None:
            delta = [x - x0 for x, x0 in zip(engine.params, self.x_sync)]
            self._average_(engine, act.param_W, delta, self.e_model, t)
            for x, x0, d in zip(engine.params, self.x_sync, delta):
                x.copy_(x0 + d)
                x0.copy_(x)
            if engine.mix_buffers:
                engine.mix_statistics(act.param_W)
        return None

"""Outer optimizers on pseudo-gradients over any mixing matrix: DiLoCo and its relatives.

Each worker keeps an anchor x_a. Every step the workers' own optimizers take an inner step; at the
end of each round of H steps the pseudo-gradient Delta_i = x_a,i - x_i is mixed with W(t),

    Delta_i <- sum_j W[i, j] Delta_j,

written to the anchor's .grad, and an ordinary optimizer (the outer optimizer) steps the anchor;
every worker then restarts from its new anchor. With W the all-1/n matrix this is DiLoCo
(Douillard et al. 2023: Nesterov SGD, lr 0.7, momentum 0.9 outside AdamW inside); over a sparse or
time-varying graph each worker keeps its own anchor (gossip DiLoCo; one random peer per round is
the NoLoCo setting); with plain momentum SGD outside it is SlowMo (Wang et al. 2020). With lr 1 and
no momentum outside and W = J it is local SGD exactly: x_a - mean(x_a - x_j) = mean(x_j).

A codec compresses what travels with error feedback: e <- e + Delta; send Q(e); e <- e - Q(e).

Each worker has its own outer optimizer over its rows of the anchor buckets, so every element goes
through the same operations at the same position within its tensor whatever the layout (vectorized
kernels treat the tail of a tensor differently from its body); an average is summed in worker order
(`engine.mix(..., in_worker_order=True)`), so DiLoCo, streaming DiLoCo and SPARTA end bit for bit alike
in every split of the workers over ranks. Streaming's average travels while the inner steps go on: each
step moves it on as far as its messages have arrived, and it lands tau steps after it started.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from dsgd.optimizers import SGD, Adam, AnyOptimizer

from .base import Rule, copies

OuterFactory = Callable[[Sequence[torch.nn.Parameter]], AnyOptimizer]


def nesterov_sgd(lr: float = 0.7, momentum: float = 0.9) -> OuterFactory:
    """DiLoCo's outer optimizer: SGD with Nesterov momentum."""
    return lambda params: SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0)


def outer_optimizer(name: str, lr: float, momentum: float) -> OuterFactory:
    """The outer optimizer by name: nesterov (DiLoCo), sgd (momentum SGD: SlowMo's slow momentum;
    momentum 0 and lr 1 is plain averaging), adam."""
    if not lr > 0:
        raise ValueError(f"the outer learning rate must be > 0, got {lr}")
    if not 0 <= momentum < 1:
        raise ValueError(f"the outer momentum must be in [0, 1), got {momentum}")
    if name == "nesterov":
        return nesterov_sgd(lr, momentum)
    if name == "sgd":
        return lambda params: SGD(params, lr=lr, momentum=momentum)
    if name == "adam":
        return lambda params: Adam(params, lr=lr, betas=(momentum, 0.999))
    raise ValueError(f"outer optimizer must be nesterov, sgd or adam, got {name!r}")


class OuterStep(Rule):
    """Args:
        schedule: says which steps end a round and with which W (LocalSGD: the all-1/n matrix,
            Gossip: the graph's W(round)); its period is H.
        outer: builds a worker's outer optimizer over its anchor rows (default: nesterov_sgd()).
        codec: compress the pseudo-gradient (None: dense), with error feedback; seed keys random codecs.
    """

    buffer_names = ("anchor", "memory")

    def __init__(self, schedule, outer: OuterFactory | None = None, codec=None, seed: int = 0):
        self.schedule, self.make_outer, self.codec, self.seed = schedule, outer or nesterov_sgd(), codec, seed

    def attach(self, engine):
        self.anchor = copies(engine.params)
        self.memory = engine.new_buffers() if self.codec is not None else []
        # one outer parameter per model tensor, a view of the worker's anchor row
        self.outer = [self.make_outer([torch.nn.Parameter(v, requires_grad=False)
                                       for v in engine.views(self.anchor, k)]) for k in range(engine.K)]

    def _mixed_pseudo_gradient(self, engine, W, t):
        delta = [a - x for a, x in zip(self.anchor, engine.params)]
        if self.codec is None:
            engine.mix(W, delta, in_worker_order=True)
            return delta
        for e, d in zip(self.memory, delta):
            e.add_(d)
        sent, mixed = engine.compressed(W, self.memory, self.codec, self.seed, t)
        for e, c in zip(self.memory, sent):
            e.sub_(c)
        return mixed

    @torch.no_grad()
    def outer_step(self, engine, delta) -> None:
        """Every worker's outer optimizer steps its anchor on its rows of the mixed pseudo-gradient."""
        for k, opt in enumerate(self.outer):
            for p, d in zip(opt.param_groups[0]["params"], engine.views(delta, k)):
                p.grad = d
            opt.step()
            for p in opt.param_groups[0]["params"]:
                p.grad = None

    def step(self, t, engine):
        engine.optimizer_step()
        act = self.schedule.action(t)
        if act.param_W is None:
            return None
        delta = self._mixed_pseudo_gradient(engine, act.param_W, t)
        self.outer_step(engine, delta)
        for x, a in zip(engine.params, self.anchor):
            x.copy_(a)
        if engine.mix_buffers:
            engine.mix_statistics(act.param_W)
        return None

    # -- state: the anchors and memory (rows), and each worker's outer optimizer -------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["outer"] = [o.state_dict() for o in self.outer]
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for o, saved in zip(self.outer, state["outer"]):
            o.load_state_dict(saved)

    def regroup_state(self, g) -> dict:
        state = super().regroup_state(g)
        state["outer"] = g.items(lambda s: s["outer"])
        return state


def fragments_by_layer(sizes: Sequence[int], F: int) -> list[list[int]]:
    """Split the model's tensors, in model order, into F contiguous groups of about equal size: group f
    ends at the first tensor where the running total reaches (f + 1) / F of the whole. Every group
    holds at least one tensor.

    Example:
        >>> fragments_by_layer([4, 4, 4, 4], 2)
        [[0, 1], [2, 3]]
    """
    if not 1 <= F <= len(sizes):
        raise ValueError(f"fragments must be between 1 and the model's {len(sizes)} parameter tensors, got {F}")
    total, out, current, running = sum(sizes), [], [], 0
    for i, size in enumerate(sizes):
        current.append(i)
        running += size
        left_tensors, left_groups = len(sizes) - i - 1, F - len(out) - 1
        if left_groups and (running * F >= (len(out) + 1) * total or left_tensors == left_groups):
            out.append(current)
            current = []
    out.append(current)
    return out


class StreamingOuterStep(Rule):
    """Streaming DiLoCo (2025): the outer step one fragment at a time, overlapped.

    The model's tensors form F fragments (fragments_by_layer). Fragment f ends a round of H steps at
    the steps t with (t + 1) % H == (f * H) // F, so the fragments take turns through the period and
    the bytes of a step are about 1/F of the model. Its pseudo-gradient starts travelling then and
    lands `delay` (tau) steps later while the inner steps go on; on landing the fragment's outer
    optimizer steps its anchor, and the worker's fragment becomes (1 - alpha) x + alpha x_a (alpha 1:
    the new anchor, as DiLoCo). With F = 1, tau = 0 and alpha = 1 it is OuterStep exactly.

    Args:
        topology: None for the all-1/n average, else a topology whose W(round) mixes each round.
    """

    buffer_names = ("anchor", "inbox")
    scalar_names = ("due",)

    def __init__(self, n_workers: int, period: int, fragments: int = 2, delay: int = 0, alpha: float = 1.0,
                 topology=None, outer: OuterFactory | None = None):
        if period < 1:
            raise ValueError(f"period H must be >= 1, got {period}")
        if not 0 <= delay < period:
            raise ValueError(f"delay tau={delay} must be in [0, H) with H={period}: a fragment's exchange lands "
                             f"before its next round starts")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.n_workers, self.H, self.F, self.tau, self.alpha = n_workers, period, fragments, delay, alpha
        self.topology, self.make_outer = topology, outer or nesterov_sgd()
        self.schedule = _StreamingSchedule(self)

    def attach(self, engine):
        slots = engine.slots()
        self.groups = fragments_by_layer([numel for _, _, numel in slots], self.F)
        self.slots = slots
        self.anchor = copies(engine.params)
        self.inbox = [torch.zeros(engine.K, slots[i][2], dtype=engine.params[slots[i][0]].dtype,
                                  device=engine.params[0].device) for g in self.groups for i in g]
        self.due = [-1] * self.F
        self.pending = [None] * self.F
        self.outer = [[self.make_outer([torch.nn.Parameter(engine.views(self.anchor, k)[i], requires_grad=False)
                                        for i in g]) for g in self.groups] for k in range(engine.K)]

    def offset(self, f: int) -> int:
        return (f * self.H) // self.F

    def mixing(self, f: int, t: int):
        """W of fragment f's round ending at step t."""
        from dsgd.schedules.base import mixing_step, uniform
        if self.topology is None:
            return uniform(self.n_workers)
        return mixing_step(self.topology, (t + 1 - self.offset(f)) // self.H)

    def _inbox(self, f: int) -> list:
        start = sum(len(g) for g in self.groups[:f])
        return self.inbox[start:start + len(self.groups[f])]

    def _columns(self, buffers, i: int):
        bucket, offset, numel = self.slots[i]
        return buffers[bucket][:, offset:offset + numel]

    @torch.no_grad()
    def _land(self, f: int, engine) -> None:
        if self.pending[f] is not None:
            self.pending[f].wait()
            self.pending[f] = None
        inbox, group = self._inbox(f), self.groups[f]
        for k in range(engine.K):
            opt = self.outer[k][f]
            for p, d in zip(opt.param_groups[0]["params"], inbox):
                p.grad = d[k].view_as(p)
            opt.step()
            for p in opt.param_groups[0]["params"]:
                p.grad = None
        for i in group:
            x, a = self._columns(engine.params, i), self._columns(self.anchor, i)
            x.copy_(x * (1.0 - self.alpha) + a * self.alpha)
        self.due[f] = -1

    def step(self, t, engine):
        engine.optimizer_step()
        for pending in self.pending:   # exchanges in flight move on while the inner steps go on
            if pending is not None and hasattr(pending, "progress"):
                pending.progress()
        for f in range(self.F):
            if self.due[f] == t:
                self._land(f, engine)
        for f in range(self.F):
            if (t + 1) % self.H != self.offset(f):
                continue
            W = self.mixing(f, t)
            for d, i in zip(self._inbox(f), self.groups[f]):
                d.copy_(self._columns(self.anchor, i) - self._columns(engine.params, i))
            if self.tau == 0:
                engine.mix(W, self._inbox(f), in_worker_order=True)
                self._land(f, engine)
            else:
                self.pending[f], self.due[f] = engine.start(W, self._inbox(f), in_worker_order=True), t + self.tau
            if f == 0 and engine.mix_buffers:
                engine.mix_statistics(W)
        return None

    def state_dict(self) -> dict:
        state = super().state_dict()   # exchanges in flight were finished (finish_all) before saving
        state["outer"] = [[o.state_dict() for o in per_worker] for per_worker in self.outer]
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.due, self.pending = list(self.due), [None] * self.F
        for mine, saved in zip(self.outer, state["outer"]):
            for o, s in zip(mine, saved):
                o.load_state_dict(s)

    def regroup_state(self, g) -> dict:
        state = super().regroup_state(g)
        state["outer"] = g.items(lambda s: s["outer"])
        return state


class _StreamingSchedule:
    """What metrics read of a streaming rule: H, and whether fragment 0 ends a round at t."""

    def __init__(self, rule):
        self.rule = rule
        self.n_workers = rule.n_workers

    def action(self, t: int):
        from dsgd.schedules.base import Action
        return Action(local_steps=self.rule.H, sync=(t + 1) % self.rule.H == 0)


class Sparta(Rule):
    """SPARTA: after every inner step, a random fraction p of the coordinates is mixed with W(t).

    The coordinates of bucket b at step t are a sorted random subset of about p of its columns, drawn
    from generator(seed, "sparta", t, b), which every worker recreates: the indices never travel and
    the bytes are p of a full mix. With p = 1 every coordinate is mixed: D-SGD with H = 1.
    """

    def __init__(self, schedule, fraction: float, seed: int = 0):
        if not 0 < fraction <= 1:
            raise ValueError(f"SPARTA's fraction p must be in (0, 1], got {fraction}")
        self.schedule, self.p, self.seed = schedule, fraction, seed

    def chosen(self, t: int, b: int, m: int, device) -> torch.Tensor:
        k = max(1, round(self.p * m))
        if k >= m:
            return torch.arange(m, device=device)
        from dsgd.data.rng import generator
        return torch.randperm(m, generator=generator(self.seed, "sparta", t, b))[:k].sort().values.to(device)

    @torch.no_grad()
    def step(self, t, engine):
        engine.optimizer_step()
        act = self.schedule.action(t)
        if act.param_W is None:
            return None
        picks = [self.chosen(t, b, x.shape[1], x.device) for b, x in enumerate(engine.params)]
        parts = [x[:, idx] for x, idx in zip(engine.params, picks)]
        engine.mix(act.param_W, parts, in_worker_order=True)
        for x, idx, part in zip(engine.params, picks, parts):
            x[:, idx] = part
        if engine.mix_buffers:
            engine.mix_statistics(act.param_W)
        return None

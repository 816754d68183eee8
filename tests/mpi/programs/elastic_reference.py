"""The reference for elastic runs: every worker in one process, the membership change made by hand.

Steps 0..s-1 run on n workers; then the lost workers are dropped, the survivors (their models and
torch optimizers, momentum included, in their old order) are wrapped again over the graph built
for the new n, the rule's state is set as docs/elastic.md says (`carry`, written out rule by rule),
and steps s..end run. Nothing of dsgd.elastic is used: this is what an elastic MPI run must equal.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: the library's test models
import dsgd  # noqa: E402
from library_models import LR0, LeastSquares, lr, lsq  # noqa: E402

STEPS = 12


def cases():
    """name -> (algorithm at a topology spec, momentum, spec before, spec after the change)."""
    return {
        "dsgd": (dsgd.algorithms.dsgd, 0.9, "ring", "ring"),
        "gradient tracking": (dsgd.algorithms.gradient_tracking, 0.0, "ring", "ring"),
        "push-sum": (dsgd.algorithms.push_sum, 0.0, "directed-exponential", "directed-exponential"),
        "choco": (lambda spec: dsgd.algorithms.choco(spec, "sign", 0.4, seed=7), 0.0, "ring", "ring"),
        "csgd": (lambda spec: dsgd.algorithms.csgd(), 0.9, None, None),
        "exact diffusion": (dsgd.algorithms.exact_diffusion, 0.0, "ring", "ring"),
        "d2": (dsgd.algorithms.d2, 0.0, "exponential", "exponential"),   # W's eigenvalues above -1/3 at 8, 6, 4
        "qgm": (lambda spec: dsgd.algorithms.qgm(spec, momentum=0.9, buffer_factor=0.8), 0.0, "ring", "ring"),
        # rounds end at steps 2, 5, 8, 11: both killed steps end one
        "diloco": (lambda spec: dsgd.algorithms.diloco(3), 0.9, None, None),
        # SlowMo over a graph, the pseudo-gradient sign-compressed with error feedback
        "gossip diloco": (lambda spec: dsgd.algorithms.diloco(2, spec, outer="sgd", outer_lr=0.8, outer_momentum=0.5,
                                                              compress="sign", seed=5), 0.0, "ring", "ring"),
        # fragment 0 starts at steps 3, 7, 11, fragment 1 at 1, 5, 9, each landing 2 steps later: an exchange is
        # in flight at both changes (the one started at 3 lands in the redone step 5, the one from 7 at 9)
        "streaming diloco": (lambda spec: dsgd.algorithms.streaming_diloco(4, fragments=2, delay=2, alpha=0.5), 0.0,
                             None, None),
        "sparta": (lambda spec: dsgd.algorithms.sparta(0.5, seed=3), 0.0, None, None),
        "compressed local sgd": (lambda spec: dsgd.algorithms.local_sgd(3, "sign", seed=2), 0.9, None, None),
        "powersgd": (lambda spec: dsgd.algorithms.csgd("powersgd:rank=1", seed=4), 0.9, None, None),
        # rounds of 3 steps from step 0, then of 4 from step 3 and 7 as the learning rate falls: both changes come
        # mid-round, and rounds decided again from step 0 at lr(5) would be of 4 steps from the start
        "qsr": (lambda spec: dsgd.algorithms.qsr(2, alpha=0.0987), 0.9, None, None),
    }


class MatrixLeastSquares(torch.nn.Module):
    """LeastSquares with x held as a 3 x 2 matrix and one more entry, so that PowerSGD has a matrix to
    compress (rank 1: 5 numbers instead of 6)."""

    def __init__(self, problem, i: int):
        super().__init__()
        x0 = torch.tensor(problem.x0[i])
        self.w, self.b = torch.nn.Parameter(x0[:6].reshape(3, 2).clone()), torch.nn.Parameter(x0[6:].clone())
        self.A, self.y, self.rows = torch.tensor(problem.A[i]), torch.tensor(problem.b[i]), problem.rows

    def forward(self) -> torch.Tensor:
        r = self.A @ torch.cat([self.w.reshape(-1), self.b]) - self.y
        return (r ** 2).sum() / (2 * self.rows)

    def x(self):
        return torch.cat([self.w.reshape(-1), self.b]).detach().numpy().copy()


def model(name: str):
    return MatrixLeastSquares if name == "powersgd" else LeastSquares


# MPI's allreduce sums the ranks' partial sums in its own order, the in-process average sums the
# rows in theirs: C-SGD, PowerSGD (its two averages) and QSR (its parameter averages) equal their
# references to round-off; the gossip rules sum in the plan's order on both, and DiLoCo, streaming
# DiLoCo, SPARTA and compressed averages sum in worker order on both, so they equal it bit for bit
ROUND_OFF = {"csgd": 1e-12, "powersgd": 1e-12, "qsr": 1e-12}


def wrap(world, models, momentum, algorithm, optimizers=None):
    optimizers = optimizers or [torch.optim.SGD(m.parameters(), lr=LR0, momentum=momentum) for m in models]
    return dsgd.DecentralizedOptimizer(optimizers, models, algorithm, world, broadcast=False, bucket_bytes=32)


def train(opt, models, first: int, last: int, before_step=None) -> None:
    """Steps FIRST..LAST-1 of the user's loop at lr(t); BEFORE_STEP(t) runs first at each (a kill)."""
    for t in range(first, last):
        if before_step is not None:
            before_step(t)
        for g in opt.param_groups:
            g["lr"] = lr(t)
        opt.zero_grad()
        for m in models:
            m().backward()
        opt.step()


def rows(new, old, keep) -> None:
    """Each survivor's rows of OLD (the buffers of the rule before the change) into NEW."""
    for b, saved in zip(new, old):
        b.copy_(saved[keep])


def carry(name: str, old, opt, keep) -> None:
    """The survivors' rule (OPT's, freshly built at the new n) given the state docs/elastic.md says,
    from the old rule OLD over every worker; KEEP: the survivors' rows in OLD."""
    new = opt.rule
    if name == "choco":   # public copies := parameters, s = W x_hat over the new graph
        for x_hat, x in zip(new.x_hat, opt.workers.params):
            x_hat.copy_(x)
        for s, x_hat in zip(new.s, new.x_hat):
            s.copy_(x_hat)
        opt.world.mixer.mix_(new.s, new.matrices[0])
    elif name == "qgm":   # each survivor's momentum of the mixed progress, kept
        rows(new.m_hat, old.m_hat, keep)
    elif name in ("diloco", "gossip diloco", "streaming diloco"):   # anchors and outer optimizers, kept
        rows(new.anchor, old.anchor, keep)
        if name == "gossip diloco":
            rows(new.memory, old.memory, keep)
        if name == "streaming diloco":
            rows(new.inbox, old.inbox, keep)   # exchanges in flight land as mixed over the old workers
            new.due = list(old.due)
        for j, k in enumerate(keep):
            mine, theirs = new.outer[j], old.outer[k]   # streaming: one per fragment
            for o, saved in (zip(mine, theirs) if name == "streaming diloco" else [(mine, theirs)]):
                o.load_state_dict(copy.deepcopy(saved.state_dict()))
    elif name == "compressed local sgd":   # error feedback and the last sync point, kept
        rows(new.e_grad, old.e_grad, keep)
        rows(new.e_model, old.e_model, keep)
        rows(new.x_sync, old.x_sync, keep)
    elif name == "powersgd":   # error feedback kept; the warm start Q is every worker's
        rows(new.e, old.e, keep)
        new.q = [q.clone() for q in old.q]
    elif name == "qsr":   # the rounds decided so far
        new.schedule._round_starts[:] = old.schedule._round_starts
    # gradient tracking, push-sum, exact diffusion, D^2 as freshly built: y <- g and a first step at the next
    # step; x <- z, w <- 1. D-SGD, C-SGD, SPARTA: no state of their own


def reference(name: str, n: int, changes, problem_seed: int = 3, steps: int = STEPS):
    """The survivors' parameters, (workers left, 7), in the survivors' order. CHANGES: (step, the
    workers lost just before it, numbered as the job numbers them at that step), in step order."""
    make, momentum, before, after = cases()[name]
    problem = lsq.Problem(n, seed=problem_seed)
    models = [model(name)(problem, i) for i in range(n)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=LR0, momentum=momentum) for m in models]
    opt = wrap(dsgd.start("self", workers_per_rank=n), models, momentum, make(before), optimizers)
    done = 0
    for at, lost in changes:
        train(opt, models, done, at)
        opt.finish()   # an exchange in flight is complete, as the elastic step leaves it
        done = at
        keep = [i for i in range(len(models)) if i not in set(lost)]
        models, optimizers = [models[i] for i in keep], [optimizers[i] for i in keep]
        world = dsgd.start("self", workers_per_rank=len(keep))
        old, opt = opt.rule, wrap(world, models, momentum, make(after), optimizers)
        opt.steps = at
        carry(name, old, opt, keep)
    train(opt, models, done, steps)
    return np.stack([m.x() for m in models])

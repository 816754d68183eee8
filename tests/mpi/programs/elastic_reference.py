"""The reference for elastic runs: every worker in one process, the membership change made by hand.

Steps 0..s-1 run on n workers; then the lost workers are dropped, the survivors (their models and
torch optimizers, momentum included, in their old order) are wrapped again over the graph built
for the new n, the rule's state is set as docs/elastic.md says, and steps s..end run. Nothing of
dsgd.elastic is used: this is what an elastic MPI run must equal.
"""
from __future__ import annotations

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
    }


# MPI's allreduce sums the ranks' partial sums in its own order, the in-process average sums the
# rows in theirs: C-SGD equals its reference to round-off; the gossip rules sum in the plan's order
# on both, so they equal it bit for bit
ROUND_OFF = {"csgd": 1e-12}


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


def reference(name: str, n: int, changes, problem_seed: int = 3, steps: int = STEPS):
    """The survivors' parameters, (workers left, 7), in the survivors' order. CHANGES: (step, the
    workers lost just before it, numbered as the job numbers them at that step), in step order."""
    make, momentum, before, after = cases()[name]
    problem = lsq.Problem(n, seed=problem_seed)
    models = [LeastSquares(problem, i) for i in range(n)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=LR0, momentum=momentum) for m in models]
    opt = wrap(dsgd.start("self", workers_per_rank=n), models, momentum, make(before), optimizers)
    done = 0
    for at, lost in changes:
        train(opt, models, done, at)
        done = at
        keep = [i for i in range(len(models)) if i not in set(lost)]
        models, optimizers = [models[i] for i in keep], [optimizers[i] for i in keep]
        world = dsgd.start("self", workers_per_rank=len(keep))
        opt = wrap(world, models, momentum, make(after), optimizers)
        opt.steps = at
        if name == "choco":   # public copies := parameters, s = W x_hat over the new graph
            rule = opt.rule
            for x_hat, x in zip(rule.x_hat, opt.workers.params):
                x_hat.copy_(x)
            for s, x_hat in zip(rule.s, rule.x_hat):
                s.copy_(x_hat)
            world.mixer.mix_(rule.s, rule.matrices[0])
        # gradient tracking and push-sum as freshly built: y <- g at the next step; x <- z, w <- 1
    train(opt, models, done, steps)
    return np.stack([m.x() for m in models])

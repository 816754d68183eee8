"""The reference for elastic runs whose lost ranks are replaced: every worker in one process, each
change of membership made by hand, no dsgd.elastic code.

A loss drops workers (the survivors keep their models, torch optimizers and order); a join appends
new workers at the end whose parameters and torch optimizer state are copies of the given workers'
(the neighbour's rows) and whose data is that of their new worker index. After every change the
workers are wrapped again over the graph built for the new n, the rule's state set as
docs/elastic.md says, and the step count goes on.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: the library's test models
import dsgd  # noqa: E402
from elastic_reference import STEPS, train, wrap  # noqa: E402,F401  (the same loop and wrapping)
from library_models import LR0, LeastSquares, lsq  # noqa: E402


def cases():
    """name -> (algorithm at a topology spec, momentum, spec before and after any change)."""
    return {
        "dsgd": (dsgd.algorithms.dsgd, 0.9, "ring"),
        "gradient tracking": (dsgd.algorithms.gradient_tracking, 0.0, "ring"),
        "push-sum": (dsgd.algorithms.push_sum, 0.0, "directed-exponential"),
        "choco": (lambda spec: dsgd.algorithms.choco(spec, "sign", 0.4, seed=7), 0.0, "ring"),
    }


def reference(name: str, n: int, changes, problem_seed: int = 3, steps: int = STEPS):
    """The workers' parameters at the end, (workers, 7), in worker order. CHANGES, in step order:
    ("lost", step, workers) drops WORKERS just before STEP; ("joined", step, workers) appends one new
    worker per entry of WORKERS just before STEP, a copy of that worker (numbered as at that step)."""
    make, momentum, spec = cases()[name]
    problem = lsq.Problem(n, seed=problem_seed)
    models = [LeastSquares(problem, i) for i in range(n)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=LR0, momentum=momentum) for m in models]
    opt = wrap(dsgd.start("self", workers_per_rank=n), models, momentum, make(spec), optimizers)
    done = 0
    for kind, at, workers in changes:
        train(opt, models, done, at)
        done = at
        if kind == "lost":
            keep = [i for i in range(len(models)) if i not in set(workers)]
            models, optimizers = [models[i] for i in keep], [optimizers[i] for i in keep]
        else:
            for source in workers:
                new = LeastSquares(problem, len(models))   # the data of its worker index
                with torch.no_grad():
                    for p, q in zip(new.parameters(), models[source].parameters()):
                        p.copy_(q)
                o = torch.optim.SGD(new.parameters(), lr=LR0, momentum=momentum)
                o.load_state_dict(copy.deepcopy(optimizers[source].state_dict()))   # its own momentum
                models, optimizers = models + [new], optimizers + [o]
        world = dsgd.start("self", workers_per_rank=len(models))
        opt = wrap(world, models, momentum, make(spec), optimizers)
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

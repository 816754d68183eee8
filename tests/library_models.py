"""Models for the library tests: worker i's least-squares loss as a torch module, so a rule driven
through `dsgd.DecentralizedOptimizer` can be held against the numpy recursions of
tests/mpi/programs/lsq.py (written from the papers, not from dsgd)."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "mpi" / "programs"))
import lsq  # noqa: E402

LR0, DECAY = 0.05, 0.99   # lr(t) = LR0 * DECAY**t, set through a torch LambdaLR scheduler


def lr(t: int) -> float:
    return LR0 * DECAY ** t


class LeastSquares(torch.nn.Module):
    """f_i(x) = ||A_i x - b_i||^2 / (2 r), x in two parameters (4 and 3 entries) like the oracles' buckets."""

    def __init__(self, problem, i: int):
        super().__init__()
        x0 = torch.tensor(problem.x0[i])
        self.head, self.tail = torch.nn.Parameter(x0[:4].clone()), torch.nn.Parameter(x0[4:].clone())
        self.A, self.y, self.rows = torch.tensor(problem.A[i]), torch.tensor(problem.b[i]), problem.rows

    def forward(self, rows: slice = slice(None)) -> torch.Tensor:
        x = torch.cat([self.head, self.tail])
        r = self.A[rows] @ x - self.y[rows]
        return (r ** 2).sum() / (2 * self.rows)

    def x(self):
        return torch.cat([self.head, self.tail]).detach().numpy().copy()


def train(opt, models, steps: int, zero=None, halves: bool = False, sched=None):
    """STEPS steps of the user's loop: zero, backward (in two halves when HALVES), step, schedule
    (SCHED, or a new LambdaLR giving lr(t))."""
    sched = sched or torch.optim.lr_scheduler.LambdaLR(opt, lambda t: DECAY ** t)
    for _ in range(steps):
        (zero or opt.zero_grad)()
        for m in models:
            if halves:
                m(slice(0, 6)).backward()
                m(slice(6, None)).backward()
            else:
                m().backward()
        opt.step()
        sched.step()

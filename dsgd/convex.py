"""Heterogeneous least squares on flat workers: rules driven without a network model, for oracles and
for experiments where the optimum is known.

Worker i minimizes f_i(x) = ||A_i x - b_i||^2 / (2 r), each with its own optimum; the global
problem is the average of the f_i, whose minimizer x* is closed-form.

    >>> p = Problem(n=4, d=7, rows=12, seed=0)
    >>> p.minimizer().shape
    (7,)
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from dsgd.comm import BucketLayout, Mixer, SelfCommunicator
from dsgd.rules.engine import WorkerEngine


class Problem:
    def __init__(self, n: int, d: int = 7, rows: int = 12, seed: int = 0, spread: float = 3.0, noise: float = 0.1):
        rng = np.random.default_rng(seed)
        self.A = rng.standard_normal((n, rows, d))
        own_optima = rng.standard_normal((n, d)) * spread  # heterogeneity: every worker pulls elsewhere
        self.b = np.einsum("nrd,nd->nr", self.A, own_optima) + noise * rng.standard_normal((n, rows))
        self.x0 = rng.standard_normal((n, d))
        self.n, self.d, self.rows = n, d, rows

    def grad(self, X: np.ndarray, workers=None) -> np.ndarray:
        idx = np.arange(self.n) if workers is None else np.asarray(workers)
        A, b = self.A[idx], self.b[idx]
        return np.einsum("nrd,nr->nd", A, np.einsum("nrd,nd->nr", A, X) - b) / self.rows

    def loss(self, x: np.ndarray) -> float:
        """f(x) = (1/n) sum_i f_i(x) at one point x."""
        r = np.einsum("nrd,d->nr", self.A, x) - self.b
        return float((r ** 2).sum() / (2 * self.rows * self.n))

    def minimizer(self) -> np.ndarray:
        H = np.einsum("nrd,nre->de", self.A, self.A)
        return np.linalg.solve(H, np.einsum("nrd,nr->d", self.A, self.b))

    def smoothness(self) -> float:
        """The largest L_i = lambda_max(A_i^T A_i) / r: a constant step below 1/L is safe for every worker."""
        return max(float(np.linalg.eigvalsh(a.T @ a / self.rows).max()) for a in self.A)


class FlatWorkers:
    """K workers whose parameters are one row each of flat buckets (split as `splits`); plain SGD as optimizer."""

    def __init__(self, x0_rows: np.ndarray, lr: Callable[[int], float], splits: Sequence[int] = (4, 3),
                 dtype: torch.dtype = torch.float64):
        self.K = len(x0_rows)
        self.splits = tuple(splits)
        size = torch.empty((), dtype=dtype).element_size()
        self.layout = BucketLayout([torch.zeros(s, dtype=dtype) for s in splits], cap_bytes=size * max(splits))
        self.params = self.layout.allocate(self.K)
        self.grads = self.layout.allocate(self.K)
        self.set_rows(self.params, x0_rows)
        self._lr, self.t = lr, 0

    def set_rows(self, buffers, X: np.ndarray) -> None:
        lo = 0
        for b, s in zip(buffers, self.splits):
            b.copy_(torch.from_numpy(np.ascontiguousarray(X[:, lo:lo + s])))
            lo += s

    @staticmethod
    def rows(buffers) -> np.ndarray:
        return torch.cat([b.double() for b in buffers], dim=1).numpy().copy()

    def optimizer_step(self) -> None:  # plain SGD: the D-SGD baseline
        for x, g in zip(self.params, self.grads):
            x.sub_(g * self._lr(self.t))

    def packed_buffers(self):
        return None

    def packed_state(self):
        return None

    def unpack_buffers(self, bufs):
        pass

    def unpack_state(self, bufs):
        pass


def run_rule(rule, mixer, problem: Problem, workers: list[int], lr, steps: int, after_step=None,
             splits: Sequence[int] = (4, 3), dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Drive `rule` on this process's workers with exact local gradients; their parameters after `steps`."""
    w = FlatWorkers(problem.x0[workers], lr, splits, dtype)
    w.first = workers
    engine = WorkerEngine(mixer, w, lr)
    rule.attach(engine)
    for t in range(steps):
        w.t = t
        w.set_rows(w.grads, problem.grad(w.rows(w.params), workers))
        rule.step(t, engine)
        if after_step is not None:
            after_step(t, rule, w)
    return w.rows(w.params)


def least_squares_curves(n: int = 16, steps: int = 2000, seed: int = 0, d: int = 200, rows: int = 60,
                         record_every: int = 10, choco_factor: int = 3) -> dict:
    """Suboptimality of x_bar against bytes sent per worker: exact gossip and CHOCO-SGD over a ring.

    The step decays as eta_0 * 100 / (100 + t), so the heterogeneity bias of a constant step
    fades and both methods keep approaching x* (with a constant step each would stall at its own
    fixed point, CHOCO's further away: its effective mixing is I + gamma (W - I)). Each CHOCO codec
    gets the best consensus step of a small grid (reported). Float32 parameters, so bytes are
    those of a float32 model.
    """
    import topologies
    from dsgd.compress import parse_codec
    from dsgd.rules import Choco, OptimizerRule
    from dsgd.schedules import Gossip

    problem = Problem(n, d=d, rows=rows, seed=seed, spread=1.0)
    f_star = problem.loss(problem.minimizer())
    eta0 = 0.5 / problem.smoothness()

    def eta(t):
        return eta0 * 100 / (100 + t)
    ring = topologies.from_spec("ring", n)
    splits = (d,)

    def curve(make_rule, steps=steps):
        mixer = Mixer(SelfCommunicator(), n)
        points = []

        def record(t, rule, w):
            if (t + 1) % record_every == 0:
                x_bar = w.rows(w.params).mean(axis=0)
                points.append((t + 1, float(mixer.worker_bytes_sent.mean()), problem.loss(x_bar) - f_star))
        run_rule(make_rule(), mixer, problem, list(range(n)), eta, steps, record, splits, torch.float32)
        return points

    methods = {"exact gossip (D-SGD)": {"rule": lambda: OptimizerRule(Gossip(ring)), "gamma": None}}
    for spec in ("top-k:ratio=0.01", "sign", "qsgd:levels=16,scaled=true"):
        best = None
        for gamma in (0.02, 0.05, 0.1, 0.2, 0.5):
            # CHOCO gets choco_factor x the steps: it has to be able to reach exact gossip's final level
            pts = curve(lambda: Choco(Gossip(ring), parse_codec(spec), gamma, seed), steps * choco_factor)
            final = pts[-1][2]
            if np.isfinite(final) and (best is None or final < best[0]):
                best = (final, gamma, pts)
        methods[f"CHOCO {spec}"] = {"gamma": best[1], "points": best[2]}
    methods["exact gossip (D-SGD)"]["points"] = curve(methods["exact gossip (D-SGD)"].pop("rule"))
    return {"problem": {"workers": n, "d": d, "rows_per_worker": rows, "step": f"{eta0:.4g} * 100 / (100 + t)",
                        "f_star": f_star, "steps": steps, "choco_steps": steps * choco_factor,
                        "graph": "ring", "seed": seed}, "methods": methods}

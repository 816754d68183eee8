"""A heterogeneous least-squares problem and plain numpy versions of every rule's recursion.

Worker i minimizes f_i(x) = ||A_i x - b_i||^2 / (2 r) with its own optimum; the global problem is
the average of the f_i. The numpy recursions here are written from the papers' formulas
(docs/design.md), not from dsgd's code, and serve as the oracles of the rule tests.
"""
from __future__ import annotations

import numpy as np
import torch

from dsgd.convex import FlatWorkers, run_rule  # noqa: F401  (the drivers; the oracles below are independent)
from dsgd.convex import Problem as _Problem

D = 7  # parameters per worker, in two float64 buckets of 4 and 3


class References:
    """Each oracle's trajectory computed once for the job, on rank 0 of COMM, and sent to every rank:
    the oracles are deterministic, so the other ranks and later backends need not run them again."""

    def __init__(self, comm):
        self.comm, self.done = comm, {}

    def get(self, key, oracle, problem) -> np.ndarray:
        if key not in self.done:
            self.done[key] = self.comm.bcast(oracle(problem) if self.comm.rank == 0 else None, root=0)
        return self.done[key]


def Problem(n: int, seed: int = 0) -> _Problem:
    return _Problem(n, d=D, rows=12, seed=seed)


# -- the oracles: whole-network numpy recursions ------------------------------------------
def oracle_gradient_tracking(p: Problem, W, lr, steps):
    X = p.x0.copy()
    for t in range(steps):
        G = p.grad(X)
        Y = G if t == 0 else Y + G - G_prev
        G_prev = G
        X, Y = W(t) @ (X - lr(t) * Y), W(t) @ Y
    return X


def oracle_diffusion(p: Problem, W, lr, steps, exact: bool):
    X, X_prev, EG_prev = p.x0.copy(), None, None
    for t in range(steps):
        M = (np.eye(p.n) + W(t)) / 2 if exact else W(t)
        G = p.grad(X)
        V = X - lr(t) * G if t == 0 else 2 * X - X_prev - lr(t) * G + EG_prev
        X_prev, EG_prev = X, lr(t) * G
        X = M @ V
    return X


def oracle_qgm(p: Problem, W, lr, steps, beta, mu, nesterov=False):
    X, M = p.x0.copy(), np.zeros_like(p.x0)
    for t in range(steps):
        G = p.grad(X)
        Dir = G + beta * (beta * M + G) if nesterov else G + beta * M
        X_new = W(t) @ (X - lr(t) * Dir)
        M = mu * M + (1 - mu) * (X - X_new) / lr(t)
        X = X_new
    return X


def oracle_push_sum(p: Problem, P, lr, steps):
    X, w = p.x0.copy(), np.ones((p.n, 1))
    for t in range(steps):
        Z = X / w
        X, w = P(t) @ (X - lr(t) * p.grad(Z)), P(t) @ w
    return X / w


def oracle_dsgd(p: Problem, W, lr, steps):
    X = p.x0.copy()
    for t in range(steps):
        X = W(t) @ (X - lr(t) * p.grad(X))
    return X


def compress_rows(codec, V: np.ndarray, seed: int, step: int) -> np.ndarray:
    """Q applied to each worker's row, bucket by bucket (columns 0-3, 4-6), keyed (seed, step, worker, bucket)."""
    from dsgd.compress import Key
    out = np.empty_like(V)
    for i, v in enumerate(V):
        for part, cols in enumerate((slice(0, 4), slice(4, D))):
            key = Key(seed, step, i, part)
            piece = torch.from_numpy(np.ascontiguousarray(v[cols]))
            out[i, cols] = codec.decode(codec.encode(piece, key), piece.numel(), key, torch.float64).numpy()
    return out


def oracle_choco(p: Problem, W, lr, steps, codec, gamma, seed, period=1):
    """CHOCO-SGD; a time-varying W keeps S_k = W_k X_hat for each matrix W_k of its period."""
    X, X_hat = p.x0.copy(), np.zeros_like(p.x0)
    S = [np.zeros_like(p.x0) for _ in range(period)]
    for t in range(steps):
        X_half = X - lr(t) * p.grad(X)
        Q = compress_rows(codec, X_half - X_hat, seed, t)
        X_hat = X_hat + Q
        S = [S_k + W(k) @ Q for k, S_k in enumerate(S)]
        X = X_half + gamma * (S[t % period] - X_hat)
    return X


def oracle_ef_local_sgd(p: Problem, H, lr, steps, codec, seed):
    X = p.x0.copy()
    X_sync, E = X.copy(), np.zeros_like(X)
    for t in range(steps):
        X = X - lr(t) * p.grad(X)
        if (t + 1) % H == 0:
            E = E + (X - X_sync)
            C = compress_rows(codec, E, seed, t)
            E = E - C
            X = X_sync + C.mean(axis=0)
            X_sync = X.copy()
    return X


def oracle_ef_csgd(p: Problem, lr, steps, codec, seed):
    X, E = p.x0.copy(), np.zeros_like(p.x0)
    for t in range(steps):
        E = E + p.grad(X)
        C = compress_rows(codec, E, seed, t)
        E = E - C
        X = X - lr(t) * C.mean(axis=0)
    return X


def _nesterov(G, buf, lr_out, mu):
    """torch.optim.SGD(nesterov=True)'s update of the anchor for a gradient G (the buffer starts as G)."""
    buf = G.copy() if buf is None else mu * buf + G
    return lr_out * (G + mu * buf), buf


def oracle_diloco(p: Problem, W, H, lr, steps, lr_out, mu, codec=None, seed=0):
    """DiLoCo (Douillard et al. 2023) with plain SGD inside and Nesterov SGD outside: after every H inner
    steps the pseudo-gradients A - X are mixed with W(round) (error-feedback compressed with a codec),
    the anchors take an outer step, and the workers restart from them."""
    X, A, E, buf = p.x0.copy(), p.x0.copy(), np.zeros_like(p.x0), None
    for t in range(steps):
        X = X - lr(t) * p.grad(X)
        if (t + 1) % H:
            continue
        D = A - X
        if codec is not None:
            E = E + D
            D = compress_rows(codec, E, seed, t)
            E = E - D
        step, buf = _nesterov(W((t + 1) // H - 1) @ D, buf, lr_out, mu)
        A = A - step
        X = A.copy()
    return X


FRAGMENTS = (slice(0, 4), slice(4, D))  # the least-squares model's two tensors, one fragment each


def oracle_streaming_diloco(p: Problem, W, H, lr, steps, lr_out, mu, delay, alpha):
    """Streaming DiLoCo (2025) with two fragments: fragment f ends its rounds at the
    steps t with (t + 1) % H == f H / 2; its mixed pseudo-gradient lands DELAY steps later, when the
    fragment's anchor takes its outer step and the worker's fragment becomes (1 - alpha) x + alpha x_a."""
    X, A = p.x0.copy(), p.x0.copy()
    bufs, flying = [None, None], [None, None]   # per fragment: Nesterov buffer; (landing step, mixed D)
    for t in range(steps):
        X = X - lr(t) * p.grad(X)
        for f, cols in enumerate(FRAGMENTS):
            if flying[f] is not None and flying[f][0] == t:
                step, bufs[f] = _nesterov(flying[f][1], bufs[f], lr_out, mu)
                A[:, cols] = A[:, cols] - step
                X[:, cols] = (1 - alpha) * X[:, cols] + alpha * A[:, cols]
                flying[f] = None
        for f, cols in enumerate(FRAGMENTS):
            offset = f * H // 2
            if (t + 1) % H != offset:
                continue
            mixed = W((t + 1 - offset) // H) @ (A[:, cols] - X[:, cols])
            if delay == 0:
                step, bufs[f] = _nesterov(mixed, bufs[f], lr_out, mu)
                A[:, cols] = A[:, cols] - step
                X[:, cols] = (1 - alpha) * X[:, cols] + alpha * A[:, cols]
            else:
                flying[f] = (t + delay, mixed)
    return X


def oracle_sparta(p: Problem, W, lr, steps, fraction, seed):
    """SPARTA: after each SGD step a random subset of about FRACTION of each bucket's coordinates,
    the same on every worker (dsgd.data.rng.generator(seed, "sparta", t, bucket)), is mixed with W."""
    from dsgd.data.rng import generator
    X = p.x0.copy()
    for t in range(steps):
        X = X - lr(t) * p.grad(X)
        for b, cols in enumerate(FRAGMENTS):
            m = cols.stop - cols.start
            k = max(1, round(fraction * m))
            idx = np.arange(m) if k >= m else np.sort(torch.randperm(m, generator=generator(seed, "sparta", t, b))[:k]
                                                       .numpy())
            chosen = cols.start + idx
            X[:, chosen] = W(t) @ X[:, chosen]
    return X

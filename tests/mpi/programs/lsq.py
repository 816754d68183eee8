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

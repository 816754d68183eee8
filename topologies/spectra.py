"""How fast gossip reaches consensus: lambda2 and the spectral gap.

For a doubly-stochastic W, x - x_bar shrinks by at most the second-largest
singular value of W per mixing step, so that value is our lambda2. For a
symmetric W it equals the second-largest eigenvalue magnitude (the usual
definition, e.g. Boyd et al. 2006); for a non-symmetric W it is
sqrt(lambda2(W^T W)).
"""
from __future__ import annotations

import math
from typing import Iterable, Union

import numpy as np


def lambda2(W: np.ndarray) -> float:
    """Second-largest singular value of W (= eigenvalue magnitude when W is symmetric).

    Returns 0.0 for a 1 x 1 matrix, which has no second value.
    """
    W = np.asarray(W, dtype=np.float64)
    if W.shape[0] < 2:
        return 0.0
    if np.array_equal(W, W.T):
        values = np.sort(np.abs(np.linalg.eigvalsh(W)))
    else:
        values = np.sort(np.linalg.svd(W, compute_uv=False))
    return float(values[-2])


def _apply(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """W @ X, touching only W's nonzeros when W is sparse (gossip: O(degree * n^2), not n^3)."""
    rows, cols = np.nonzero(W)
    if len(rows) > W.size // 8:
        return W @ X
    products = W[rows, cols][:, None] * X[cols]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    out = np.zeros_like(X)
    out[rows[starts]] = np.add.reduceat(products, starts, axis=0)
    return out


def period_contraction(matrices: Iterable[np.ndarray]) -> float:
    """Per-step contraction rate over one period: sigma_2(W_{p-1} ... W_0) ** (1/p).

    Computed as the largest singular value of the product restricted to the
    complement of the consensus direction (equal to sigma_2 of the product when
    every W_t is doubly stochastic), renormalising as it goes so a rate far
    below machine epsilon after p steps is still resolved.
    """
    X, p, log_scale = None, 0, 0.0
    for W in matrices:
        if X is None:
            X = np.eye(len(W)) - 1.0 / len(W)  # I - J: orthogonal to the all-ones vector
        X, p = _apply(W, X), p + 1
        X -= X.mean(axis=0)  # drop rounding drift back into the consensus direction
        peak = float(np.abs(X).max())
        if peak == 0.0:
            return 0.0
        exponent = math.frexp(peak)[1]
        X = np.ldexp(X, -exponent)  # rescale by a power of two: exact, keeps zeros zero
        log_scale += exponent * math.log(2.0)
    if X is None or len(X) < 2:
        return 0.0
    sigma = np.linalg.norm(X, 2)
    if sigma == 0.0:
        return 0.0
    return float(math.exp((log_scale + math.log(sigma)) / p))


def mixing_rate(topo_or_W: Union["object", np.ndarray]) -> float:
    """Per-step contraction of x - x_bar: lambda2(W), or a time-varying Topology's period rate."""
    if isinstance(topo_or_W, (np.ndarray, list, tuple)):
        return lambda2(np.asarray(topo_or_W, dtype=np.float64))
    if topo_or_W.period == 1:
        return lambda2(topo_or_W.W(0))
    return period_contraction(topo_or_W.W(t) for t in range(topo_or_W.period))


def spectral_gap(topo_or_W: Union["object", np.ndarray]) -> float:
    """1 - lambda2: 1 means exact averaging in one step, 0 means no consensus.

    For a matrix, 1 - lambda2(W). For a Topology with period 1, the same on
    W(0). For a time-varying Topology with period p,
    1 - sigma_2(W(p-1) @ ... @ W(0)) ** (1/p): the per-step rate of one
    full cycle (1 for the one-peer exponential graph with n a power of two).
    Clipped at 0, since rounding can put a disconnected graph's rate at 1 + 1e-16.
    """
    return max(0.0, 1.0 - mixing_rate(topo_or_W))

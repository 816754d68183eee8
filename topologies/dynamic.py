"""Time-varying one-peer mixing: W_t = (I + P_t) / 2 for a permutation P_t.

Each node averages half-half with one peer per step, so every node sends and
receives exactly one message; any permutation keeps W_t doubly stochastic.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

MAX_SHUFFLES = 64  # rejection draws for a derangement before falling back to one cycle


def half_half(peer: np.ndarray) -> np.ndarray:
    """(I + P) / 2 where P[i, peer[i]] = 1: node i averages with node peer[i]."""
    n = len(peer)
    W = np.eye(n) / 2
    W[np.arange(n), peer] += 0.5
    return W


def one_peer_exponential_period(n: int) -> int:
    """ceil(log2 n) steps cover the hops 2^0 .. 2^(period-1); at least 1."""
    return max(1, math.ceil(math.log2(n))) if n > 1 else 1


def one_peer_exponential_peers(n: int) -> Callable[[int], np.ndarray]:
    """peer_k[i] = i + 2^k mod n: whom node i averages with at step k (Ying et al. 2021)."""
    return lambda k: (np.arange(n) + 2 ** k) % n


def one_peer_exponential(n: int) -> Callable[[int], np.ndarray]:
    """W_k: node i averages with i + 2^k mod n.

    For n a power of two, W_{p-1} ... W_0 is exactly the all-1/n matrix.
    """
    peers = one_peer_exponential_peers(n)
    return lambda k: half_half(peers(k))


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation with no fixed points (identity for n = 1)."""
    if n < 2:
        return np.arange(n)
    for _ in range(MAX_SHUFFLES):  # about e draws on average
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm
    order = rng.permutation(n)  # one n-cycle through a random order: never a fixed point
    perm = np.empty(n, dtype=int)
    perm[order] = np.roll(order, -1)
    return perm


def random_one_peer_peers(n: int, seed: int) -> Callable[[int], np.ndarray]:
    """peer_k: a random derangement drawn from (seed, k), the same on every process."""
    return lambda k: derangement(n, np.random.default_rng([seed, k]))


def random_one_peer(n: int, seed: int) -> Callable[[int], np.ndarray]:
    """W_k = (I + P_k) / 2 for the derangement peer_k."""
    peers = random_one_peer_peers(n, seed)
    return lambda k: half_half(peers(k))

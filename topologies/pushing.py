"""Directed mixing for push-sum: column-stochastic P, where P[j, i] is the share node i pushes to j.

Each node keeps one share for itself and pushes one to each out-neighbour, all equal, so what a
node sends sums to 1 (columns sum to 1) while what it receives need not (rows need not).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np


def push_matrix(out_peers: Sequence[Sequence[int]]) -> np.ndarray:
    """P with P[i, i] = P[j, i] = 1 / (out-degree of i + 1) for every out-neighbour j of i."""
    n = len(out_peers)
    P = np.zeros((n, n))
    for i, peers in enumerate(out_peers):
        share = 1.0 / (len(peers) + 1)
        P[i, i] = share
        for j in peers:
            P[j, i] = share
    return P


def directed_exponential_period(n: int) -> int:
    return max(1, math.ceil(math.log2(n))) if n > 1 else 1


def directed_exponential_peers(n: int) -> Callable[[int], list]:
    """Out-neighbours at step k: node i pushes to i + 2^k mod n; one message per node per step."""
    return lambda k: [[(i + 2 ** k) % n] if n > 1 else [] for i in range(n)]


def directed_exponential(n: int) -> Callable[[int], np.ndarray]:
    """P_k: node i pushes half to i + 2^k mod n (and keeps half)."""
    peers = directed_exponential_peers(n)
    return lambda k: push_matrix(peers(k))


def random_out_peers(n: int, s: int, seed: int) -> Callable[[int], list]:
    """Out-neighbours at step k: s distinct random others per node, drawn from (seed, k): the same everywhere."""
    def step(k: int) -> list:
        rng = np.random.default_rng([seed, k])
        peers = []
        for i in range(n):
            others = np.delete(np.arange(n), i)
            peers.append(sorted(int(j) for j in rng.choice(others, size=s, replace=False)))
        return peers
    return step


def random_out(n: int, s: int, seed: int) -> Callable[[int], np.ndarray]:
    """P_k: every node pushes 1/(s+1) to each of its s random out-neighbours."""
    peers = random_out_peers(n, s, seed)
    return lambda k: push_matrix(peers(k))


def out_peers_of(edges: np.ndarray, n: int) -> list[list[int]]:
    """Out-neighbour lists from rows (j, i): node j pushes to node i."""
    peers: list[set] = [set() for _ in range(n)]
    for j, i in edges:
        if j != i:
            peers[int(j)].add(int(i))
    return [sorted(p) for p in peers]

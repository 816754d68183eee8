"""Compute times with stragglers, and who waits for whom in a synchronous step.

A rank starts step t when it finished step t - 1, computes for c_r(t) seconds, then mixes. Its
mix can only end after every message it needs was sent, and rank j sends once j has computed:

    finish_r(t) = max over j in waits_r(t) + {r} of (finish_j(t - 1) + c_j(t))  +  comm_r(t)

where waits_r(t) is every rank for an allreduce (it waits for the slowest worker), the ranks it
receives from for a gossip step (the slowest in-neighbour), and nobody for the identity. Over T
steps the time per step is max_r finish_r(T) / T: without stragglers and with one W that is the
compute time plus the slowest rank's communication; with stragglers a delay reaches a rank's
neighbours one hop per step, so gossip pays less for it than an allreduce but more than nothing.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .cluster import SlowRank, Stragglers

EVERYONE = None  # waits entry of an allreduce step: every rank waits for every rank


def draw_compute(stragglers: Stragglers, compute_s: float, steps: int, size: int) -> np.ndarray:
    """(steps, size) compute seconds per rank per step.

    Draw order, from numpy.random.default_rng(seed): first z = standard_normal((steps, size)), then
    u = random((steps, size)); c = compute_s * exp(sigma z - sigma^2 / 2) * (slowdown if u < prob
    else 1). Without stragglers every entry is compute_s.
    """
    if not stragglers.active:
        return np.full((steps, size), float(compute_s))
    rng = np.random.default_rng(stragglers.seed)
    z = rng.standard_normal((steps, size))
    u = rng.random((steps, size))
    jitter = np.exp(stragglers.sigma * z - stragglers.sigma ** 2 / 2)
    return compute_s * jitter * np.where(u < stragglers.prob, stragglers.slowdown, 1.0)


def add_slow_rank(compute: np.ndarray, slow: SlowRank) -> np.ndarray:
    """COMPUTE (steps, size) with SLOW's delay added to its rank's column: delay_s every step, or a
    uniform draw from [0, 2 delay_s] per step (numpy default_rng(seed).uniform)."""
    steps, size = compute.shape
    if not slow.rank < size:
        raise ValueError(f"slow rank {slow.rank} is not below the {size} ranks")
    out = compute.copy()
    if slow.random:
        out[:, slow.rank] += np.random.default_rng(slow.seed).uniform(0.0, 2 * slow.delay_s, steps)
    else:
        out[:, slow.rank] += slow.delay_s
    return out


def finish_times(compute: np.ndarray, comm: np.ndarray, waits: Sequence[Optional[Sequence[tuple]]]) -> np.ndarray:
    """(steps, size) finish time of every rank after every step, from the recursion above.

    Args:
        compute, comm: (steps, size) seconds.
        waits: per step, EVERYONE (an allreduce) or per rank the tuple of ranks it receives from.
    """
    steps, size = compute.shape
    finish = np.zeros((steps, size))
    previous = np.zeros(size)
    for t in range(steps):
        ready = previous + compute[t]  # when each rank's message of step t can leave
        if waits[t] is EVERYONE:
            start = np.full(size, ready.max())
        else:
            start = np.array([max([ready[r], *(ready[j] for j in waits[t][r])]) for r in range(size)])
        finish[t] = start + comm[t]
        previous = finish[t]
    return finish


def seconds_per_step(finish: np.ndarray) -> float:
    """max over ranks of the last finish time, over the number of steps."""
    return float(finish[-1].max() / finish.shape[0])

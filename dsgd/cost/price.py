"""Price one step of an algorithm: its schedule of W(t), planned as the trainer plans it, on a Cluster.

An algorithm is named as the cost CLI takes it:
    csgd           parallel SGD: the gradients are averaged every step (W = 1/n: one allreduce)
    local:H        local SGD: the parameters are averaged every H-th step, the other steps are W = I
    dsgd:SPEC      D-SGD gossiping every step with the topology SPEC (as topologies.from_spec takes it);
                   dsgd:complete is W = 1/n, hence an allreduce, as the Mixer runs it
    identity       no communication: the compute time alone
Time-varying schedules are priced over whole periods and averaged over their steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import topologies

from . import timeline
from .cluster import INTER, Cluster, SlowRank, Stragglers
from .traffic import (allreduce_bytes_per_rank, plan_kind, rank_plans, ring_allreduce_seconds, sparse_seconds,
                      traffic)

DEFAULT_STEPS = 64  # steps simulated per prediction (whole periods, at least one)


class Averaging:
    """W = 1/n on every EVERY-th step (t = every - 1, 2 every - 1, ...), W = I on the others."""

    def __init__(self, n: int, every: int = 1):
        self.period, self.time_varying = every, every > 1
        self._average, self._identity = np.full((n, n), 1.0 / n), np.eye(n)

    def W(self, t: int = 0) -> np.ndarray:
        return self._average if t % self.period == self.period - 1 else self._identity


class _Identity:
    """W = I at every step: nothing moves."""

    period, time_varying = 1, False

    def __init__(self, n: int):
        self._W = np.eye(n)

    def W(self, t: int = 0) -> np.ndarray:
        return self._W


def schedule_for(algorithm: str, n_workers: int):
    """The schedule (anything with W(t) and period) of ALGORITHM on N_WORKERS workers.

    Raises ValueError (topologies.TopologyError for a topology) with one line saying what is wrong.
    """
    name, _, spec = algorithm.partition(":")
    if name == "csgd" and not spec:
        return Averaging(n_workers)
    if name == "identity" and not spec:
        return _Identity(n_workers)
    if name == "local" and spec:
        if not spec.isdigit() or int(spec) < 1:
            raise ValueError(f"local:H needs a positive integer H, got {spec!r}")
        return Averaging(n_workers, every=int(spec))
    if name == "dsgd" and spec:
        return topologies.from_spec(spec, n_workers)
    raise ValueError(f"unknown algorithm {algorithm!r} (known: csgd, local:H, dsgd:TOPOLOGY, identity)")


@dataclass(frozen=True)
class StepCost:
    """One algorithm's predicted step on one cluster; seconds and bytes are per step.

    step_s: time per step from the synchronous recursion (timeline), compute included.
    compute_s: mean drawn compute time of a rank.
    comm_s: mean over the period's steps of the slowest rank's communication time.
    bytes_sent_per_rank: the largest mean over ranks of bytes a rank sends.
    inter_node_messages: mean number of messages crossing nodes (sparse steps; 0 for allreduce and identity).
    kinds: the kinds of step in one period (identity, average, sparse), in order of first use.
    """
    algorithm: str
    period: int
    kinds: tuple
    step_s: float
    compute_s: float
    comm_s: float
    bytes_sent_per_rank: float
    inter_node_messages: float


def _price_matrix(plans: list, cluster: Cluster, model_bytes: float) -> tuple:
    """(kind, comm seconds per rank, waits, bytes sent per rank, inter-node messages) of one step."""
    kind, size = plan_kind(plans), cluster.size
    if kind == "identity":
        return kind, np.zeros(size), tuple(() for _ in range(size)), np.zeros(size), 0
    if kind == "average":
        return (kind, np.full(size, ring_allreduce_seconds(cluster, model_bytes)), timeline.EVERYONE,
                np.full(size, allreduce_bytes_per_rank(size, model_bytes)), 0)
    ranks = traffic(plans, cluster, model_bytes)
    sent = np.array([sum(r.out_bytes.values()) for r in ranks])
    crossing = sum(r.out_messages[INTER] for r in ranks)
    return kind, sparse_seconds(ranks, cluster), tuple(r.senders for r in ranks), sent, crossing


def predict_step(algorithm: str, cluster: Cluster, model_bytes: float, compute_s: float,
                 stragglers: Stragglers = Stragglers(), steps: int = DEFAULT_STEPS,
                 slow: SlowRank | None = None) -> StepCost:
    """Predicted seconds per step of ALGORITHM (see the module docstring) on CLUSTER.

    Args:
        model_bytes: bytes of one model (a worker's row), > 0.
        compute_s: a rank's forward, backward and update time for one step (its K workers), >= 0.
        stragglers: how compute times vary; none by default.
        steps: steps simulated, rounded up to whole periods.
        slow: one rank slowed by a delay per step (the trainer's --straggler-rank), on top of STRAGGLERS.
            The others then wait for it as the recursion of timeline.py says: an allreduce step for the
            slowest rank, a gossip step for the slowest in-neighbour (so a delay spreads one hop per step).
    """
    if not model_bytes > 0 or not math.isfinite(model_bytes):
        raise ValueError(f"model size must be a finite number of bytes > 0, got {model_bytes:g}")
    if not compute_s >= 0 or not math.isfinite(compute_s):
        raise ValueError(f"compute time must be a finite number >= 0, got {compute_s:g}")
    schedule = schedule_for(algorithm, cluster.n_workers)
    priced = [_price_matrix(rank_plans(schedule, t, cluster.size, cluster.workers_per_rank), cluster, model_bytes)
              for t in range(schedule.period)]
    total = math.ceil(max(steps, 1) / schedule.period) * schedule.period
    cycle = [priced[t % schedule.period] for t in range(total)]
    compute = timeline.draw_compute(stragglers, compute_s, total, cluster.size)
    if slow is not None:
        compute = timeline.add_slow_rank(compute, slow)
    comm = np.array([p[1] for p in cycle])
    finish = timeline.finish_times(compute, comm, [p[2] for p in cycle])
    kinds = tuple(dict.fromkeys(p[0] for p in priced))
    return StepCost(algorithm=algorithm, period=schedule.period, kinds=kinds,
                    step_s=timeline.seconds_per_step(finish), compute_s=float(compute.mean()),
                    comm_s=float(np.mean([p[1].max() for p in priced])),
                    bytes_sent_per_rank=float(np.mean([p[3] for p in priced], axis=0).max()),
                    inter_node_messages=float(np.mean([p[4] for p in priced])))

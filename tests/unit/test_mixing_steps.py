"""A step of a topology (topologies.steps) is W(t) itself, and a rank plans from its own rows only.

The dense matrix W(t) is the reference: every step object must equal it entry for entry, be
classified as it is, and give every rank exactly the plan the dense matrix gives.
"""
import numpy as np
import pytest

import topologies
from dsgd.comm.plan import classify, make_plan, plan_from_step
from dsgd.schedules import base as schedule_base
from topologies import steps

SPECS = ["complete", "ring", "torus", "grid", "star", "hypercube", "exponential", "one-peer-exponential",
         "random-regular:degree=3,seed=1", "erdos-renyi:p=0.5,seed=2", "random-one-peer:seed=3,period=5",
         "directed-exponential", "random-out:s=2,seed=4,period=3"]
LAYOUTS = [(1, 12), (2, 6), (3, 4), (4, 3), (6, 2), (12, 1)]   # (ranks, workers per rank), n = 12


def every_step(n):
    for spec in SPECS:
        try:
            topo = topologies.from_spec(spec, n)
        except topologies.TopologyError:
            continue
        for k in range(topo.period):
            yield f"{spec}@{k}", topo, k


@pytest.mark.parametrize("n", [1, 2, 3, 8, 9, 12, 16])
def test_every_step_is_its_dense_matrix_entry_for_entry(n):
    for label, topo, k in every_step(n):
        step, W = topo.step(k), topo.W(k)
        assert np.array_equal(np.asarray(step), W), label
        assert step.kind == classify(W), label
        for j in range(n):
            cols, weights = step.row(j)
            assert np.array_equal(cols, np.flatnonzero(W[j])), label
            assert np.array_equal(weights, W[j, cols]), label
            rows, weights = step.col(j)
            assert np.array_equal(rows, np.flatnonzero(W[:, j])), label
            assert np.array_equal(weights, W[rows, j]), label


@pytest.mark.parametrize("size, K", LAYOUTS)
def test_every_rank_plans_from_a_step_exactly_as_from_the_dense_matrix(size, K):
    for label, topo, k in every_step(size * K):
        for rank in range(size):
            assert plan_from_step(topo.step(k), rank, size, K) == make_plan(topo.W(k), rank, size, K), \
                f"{label} rank {rank}"


def test_a_dense_users_matrix_and_its_step_plan_alike():
    rng = np.random.default_rng(0)
    A = rng.random((12, 12)) * (rng.random((12, 12)) < 0.3) + np.eye(12)
    for _ in range(500):
        A /= A.sum(1, keepdims=True)
        A /= A.sum(0, keepdims=True)
    step = steps.Sparse.from_dense(A)
    for size, K in LAYOUTS:
        for rank in range(size):
            assert make_plan(step, rank, size, K) == make_plan(A, rank, size, K)


@pytest.mark.parametrize("n", [3, 8, 12])
def test_halfway_is_exactly_half_of_identity_plus_W(n):
    for label, topo, k in every_step(n):
        expected = 0.5 * (np.eye(n) + topo.W(k))
        half = topo.step(k).halfway()
        assert np.array_equal(np.asarray(half), expected), label
        assert half is topo.step(k).halfway(), "built once per step"
    assert np.array_equal(np.asarray(steps.average(n).halfway()), 0.5 * (np.eye(n) + np.full((n, n), 1 / n)))


def test_exact_average_and_identity_need_no_matrix():
    assert steps.average(6).kind == "average" and steps.identity(6).kind == "identity"
    assert np.array_equal(np.asarray(schedule_base.uniform(6)), np.full((6, 6), 1 / 6))
    assert np.array_equal(np.asarray(steps.identity(6)), np.eye(6))
    assert make_plan(steps.average(8), 1, 4, 2) == make_plan(np.full((8, 8), 1 / 8), 1, 4, 2)


def test_keys_name_topology_and_step_within_the_period():
    ring, other_ring = topologies.build("ring", 8), topologies.build("ring", 8)
    one_peer = topologies.build("one-peer-exponential", 8)
    assert ring.step(0) is ring.step(5), "a static topology has one step"
    assert ring.step(0).key != other_ring.step(0).key, "two topologies never share a key"
    assert one_peer.step(1) is one_peer.step(1 + one_peer.period)
    assert len({one_peer.step(k).key for k in range(one_peer.period)}) == one_peer.period


class CountingStep:
    """A sparse step that records which rows and columns were read, and how many entries."""

    def __init__(self, step):
        self.inner, self.rows_read, self.cols_read, self.entries = step, set(), set(), 0
        self.kind, self.n, self.key, self.shape = step.kind, step.n, step.key, step.shape

    def row(self, i):
        self.rows_read.add(i)
        out = self.inner.row(i)
        self.entries += len(out[0])
        return out

    def col(self, j):
        self.cols_read.add(j)
        out = self.inner.col(j)
        self.entries += len(out[0])
        return out

    def diagonal(self, i):
        self.rows_read.add(i)
        return self.inner.diagonal(i)

    def dense(self):
        raise AssertionError("planning asked for the dense matrix")


@pytest.mark.parametrize("spec", ["ring", "torus", "exponential", "one-peer-exponential"])
def test_planning_at_4096_workers_reads_only_this_ranks_rows_and_columns(spec):
    size, K = 16, 256
    n = size * K
    topo = topologies.from_spec(spec, n)
    topo.step(0)  # a static family's one step is read off the W it was built with, once
    topo.W = lambda t=0: (_ for _ in ()).throw(AssertionError("n x n matrix built for a step"))
    for t in range(min(topo.period, 3)):
        for rank in (0, 7, size - 1):
            counted = CountingStep(topo.step(t))
            plan = steps_plan(counted, rank, size, K)
            mine = set(range(rank * K, rank * K + K))
            assert counted.rows_read <= mine and counted.cols_read <= mine
            degree = max(len(topo.step(t).row(i)[0]) for i in mine)
            assert counted.entries <= 2 * K * degree, (counted.entries, K, degree)
            assert plan.kind == "sparse" and len(plan.rows) == K


def steps_plan(step, rank, size, K):
    return plan_from_step(step, rank, size, K)


def test_one_peer_steps_at_4096_workers_are_built_without_the_matrix():
    topo = topologies.build("one-peer-exponential", 4096)
    topo.W = lambda t=0: (_ for _ in ()).throw(AssertionError("n x n matrix built"))
    for k in range(topo.period):
        step = topo.step(k)
        assert step.nnz == 2 * 4096
        cols, weights = step.row(5)
        assert cols.tolist() == sorted([5, (5 + 2 ** k) % 4096]) and weights.tolist() == [0.5, 0.5]


def test_a_step_that_is_not_stochastic_is_refused_in_one_line():
    bad = steps.Sparse.from_entries(3, np.array([0, 1, 2]), np.array([0, 1, 2]), np.array([1.0, 0.5, 1.0]))
    with pytest.raises(topologies.TopologyError, match="row 1 sums to 0.5"):
        bad.validate()

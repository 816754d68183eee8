"""A mixing step is read off W itself, and each rank's plan names exactly its neighbours."""
import numpy as np
import pytest

from dsgd.comm.plan import classify, make_plan


def ring(n):
    W = np.zeros((n, n))
    for i in range(n):
        W[i, i] = W[i, (i + 1) % n] = W[i, (i - 1) % n] = 1 / 3
    return W


def test_identity_average_and_sparse_are_told_apart_by_the_matrix():
    assert classify(np.eye(5)) == "identity"
    assert classify(np.full((5, 5), 1 / 5)) == "average"
    assert classify(ring(5)) == "sparse"
    assert classify(np.eye(1)) == "identity"  # one worker: nothing to do


def test_ring_plan_with_one_worker_per_rank_talks_to_both_neighbours():
    plan = make_plan(ring(6), rank=2, size=6, workers_per_rank=1)
    assert plan.kind == "sparse"
    assert plan.send_to == ((1, (0,)), (3, (0,)))
    assert plan.recv_from == ((1, (1,)), (3, (3,)))
    # own weight first, then neighbours by ascending global index (1, then 3)
    assert plan.rows == (((0, pytest.approx(1 / 3)), (1, pytest.approx(1 / 3)), (2, pytest.approx(1 / 3))),)


def test_ring_plan_with_two_workers_per_rank_keeps_inner_edges_local():
    plan = make_plan(ring(8), rank=1, size=4, workers_per_rank=2)  # rank 1 holds workers 2, 3
    assert plan.send_to == ((0, (0,)), (2, (1,)))   # worker 2 -> rank 0, worker 3 -> rank 2
    assert plan.recv_from == ((0, (1,)), (2, (4,)))
    sources = [[s for s, _ in row] for row in plan.rows]
    assert sources == [[0, 2, 1], [1, 0, 3]]  # slot 0 = worker 2: self, worker 1 (recv 0), worker 3 (slot 1)


def test_directed_matrix_sends_only_where_a_row_needs_it():
    n = 4
    W = 0.5 * (np.eye(n) + np.roll(np.eye(n), 1, axis=1))  # worker i averages with i+1
    plan = make_plan(W, rank=0, size=4, workers_per_rank=1)
    assert plan.send_to == ((3, (0,)),)
    assert plan.recv_from == ((1, (1,)),)


def test_wrong_shape_is_refused_with_the_expected_shape():
    with pytest.raises(ValueError, match=r"expected \(4, 4\)"):
        make_plan(np.eye(3), rank=0, size=4, workers_per_rank=1)

"""validate_mixing_matrix names exactly what is wrong with a matrix."""
import networkx as nx
import numpy as np
import pytest

from topologies import TopologyError, validate_mixing_matrix

RING4 = np.array([[2, 1, 0, 1], [1, 2, 1, 0], [0, 1, 2, 1], [1, 0, 1, 2]]) / 4


def test_a_doubly_stochastic_matrix_on_its_graph_passes():
    validate_mixing_matrix(RING4, nx.cycle_graph(4))
    validate_mixing_matrix(np.eye(3))
    validate_mixing_matrix([[0.5, 0.5], [0.5, 0.5]])


def test_row_sum_off_by_more_than_tolerance_names_the_row():
    W = RING4.copy()
    W[3] = [0.2, 0, 0.2, 0.5]
    with pytest.raises(TopologyError, match=r"^W row 3 sums to 0.9, not 1 \(tolerance 1e-09\)$"):
        validate_mixing_matrix(W)


def test_column_sums_must_be_one_too():
    W = np.array([[1.0, 0.0], [1.0, 0.0]])  # row stochastic only
    with pytest.raises(TopologyError, match="W column 0 sums to 2, not 1"):
        validate_mixing_matrix(W)


def test_tolerance_and_name_are_used():
    W = RING4 + 1e-7 * np.eye(4)
    validate_mixing_matrix(W, tol=1e-6)
    with pytest.raises(TopologyError, match="mine row 0 sums to"):
        validate_mixing_matrix(W, name="mine")


@pytest.mark.parametrize("W, message", [
    (np.ones((2, 3)) / 3, "must be a square matrix, got shape (2, 3)"),
    (np.array([[np.nan, 1], [1, 0]]), "W[0, 0] = nan is not finite"),
    (np.array([[1.5, -0.5], [-0.5, 1.5]]), "W[0, 1] = -0.5 is negative"),
    ([["a", "b"], ["c", "d"]], "not a numeric matrix"),
])
def test_shape_finiteness_and_sign(W, message):
    with pytest.raises(TopologyError) as info:
        validate_mixing_matrix(W)
    assert message in str(info.value)


def test_weight_outside_the_graph_is_named():
    with pytest.raises(TopologyError, match=r"W\[0, 2\] = 0.25 but nodes 0 and 2 are not neighbours"):
        validate_mixing_matrix(np.full((4, 4), 0.25), nx.cycle_graph(4))


def test_directed_graph_edge_j_to_i_allows_W_i_j():
    W = 0.5 * (np.eye(3) + np.roll(np.eye(3), 1, axis=1))  # i receives from i + 1
    senders = nx.DiGraph([(1, 0), (2, 1), (0, 2)])
    validate_mixing_matrix(W, senders)
    with pytest.raises(TopologyError, match="1 -> 0 is not an edge"):
        validate_mixing_matrix(W, senders.reverse())

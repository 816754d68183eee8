"""Spectra against closed forms (never against the package's own numbers)."""
import math

import numpy as np
import pytest

from topologies import build, lambda2, spectral_gap


@pytest.mark.parametrize("n", [3, 4, 5, 8, 16, 17, 33, 64])
def test_ring_lambda2_is_one_third_of_one_plus_two_cos(n):
    expected = (1 + 2 * math.cos(2 * math.pi / n)) / 3
    assert lambda2(build("ring", n).W()) == pytest.approx(expected, abs=1e-12)


def test_four_by_four_torus_with_one_fifth_weights_has_lambda2_three_fifths():
    topo = build("torus", 16)
    assert topo.options == {"rows": 4, "cols": 4}
    assert np.allclose(np.diag(topo.W()), 0.2)
    assert lambda2(topo.W()) == pytest.approx(3 / 5, abs=1e-12)


@pytest.mark.parametrize("rows, cols", [(3, 3), (3, 5), (4, 6), (5, 5)])
def test_torus_lambda2_is_largest_magnitude_of_its_fourier_eigenvalues(rows, cols):
    # Eigenvalues of (I + A_torus) / 5 are (1 + 2 cos(2 pi a / rows) + 2 cos(2 pi b / cols)) / 5.
    values = sorted(
        abs(1 + 2 * math.cos(2 * math.pi * a / rows) + 2 * math.cos(2 * math.pi * b / cols)) / 5
        for a in range(rows) for b in range(cols))
    topo = build("torus", rows * cols, rows=rows, cols=cols)
    assert lambda2(topo.W()) == pytest.approx(values[-2], abs=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 6])
def test_hypercube_lambda2_is_d_minus_one_over_d_plus_one(d):
    assert lambda2(build("hypercube", 2 ** d).W()) == pytest.approx((d - 1) / (d + 1), abs=1e-12)


@pytest.mark.parametrize("n", [3, 5, 10, 32])
def test_star_with_metropolis_weights_has_lambda2_one_minus_one_over_n(n):
    assert lambda2(build("star", n).W()) == pytest.approx(1 - 1 / n, abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_complete_graph_averages_exactly_in_one_step(n):
    W = build("complete", n).W()
    assert np.array_equal(W, np.full((n, n), 1 / n))
    assert lambda2(W) == pytest.approx(0.0, abs=1e-12)
    assert spectral_gap(W) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("tau", [1, 2, 3, 4, 5, 6])
def test_static_exponential_graph_has_lambda2_one_minus_two_over_one_plus_log2_n(tau):
    # Ying et al. 2021: for n = 2^tau the gap of the static exponential graph is 2 / (1 + tau).
    assert lambda2(build("exponential", 2 ** tau).W()) == pytest.approx(1 - 2 / (1 + tau), abs=1e-12)


@pytest.mark.parametrize("n", [5, 6, 7, 12, 20])
def test_exponential_lambda2_matches_its_circulant_eigenvalues(n):
    hops = math.ceil(math.log2(n))
    m = np.arange(1, n)
    eig = (1 + sum(np.exp(-2j * np.pi * 2 ** k * m / n) for k in range(hops))) / (hops + 1)
    assert lambda2(build("exponential", n).W()) == pytest.approx(np.abs(eig).max(), abs=1e-12)


@pytest.mark.parametrize("n", [2, 4, 8, 16, 32, 64])
def test_one_peer_exponential_product_over_log2_n_steps_is_exact_average(n):
    topo = build("one-peer-exponential", n)
    assert topo.period == int(math.log2(n))
    product = np.eye(n)
    for t in range(topo.period):
        product = topo.W(t) @ product
    assert np.allclose(product, np.full((n, n), 1 / n), atol=1e-12, rtol=0)
    assert spectral_gap(topo) == pytest.approx(1.0, abs=1e-12)


def test_lambda2_of_non_symmetric_matrix_is_its_second_singular_value():
    # Directed 3-cycle with half-half weights: W^T W has eigenvalues 1, 1/4, 1/4.
    W = 0.5 * (np.eye(3) + np.roll(np.eye(3), 1, axis=1))
    assert lambda2(W) == pytest.approx(0.5, abs=1e-12)


def test_time_varying_gap_uses_the_period_product():
    # n = 3 one-peer exponential: W_0 = (I + S)/2, W_1 = (I + S^2)/2 with S the cyclic shift.
    # Product = (I + S + S^2 + S^3)/4 = (2I + S + S^2)/4, whose nonzero-frequency eigenvalues
    # have magnitude |2 + w + w^2| / 4 = 1/4 (w a cube root of unity); per step (1/4)^(1/2).
    topo = build("one-peer-exponential", 3)
    assert topo.period == 2
    assert spectral_gap(topo) == pytest.approx(1 - 0.5, abs=1e-12)


def test_disconnected_identity_matrix_has_zero_gap():
    assert spectral_gap(np.eye(4)) == 0.0
    assert lambda2(np.eye(4)) == pytest.approx(1.0)

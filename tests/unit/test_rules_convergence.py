"""What the new rules exist for, on heterogeneous strongly convex least squares (in-process, 8 workers).

With a constant step, gradient tracking and exact diffusion reach the exact global minimizer; D-SGD
with the same step keeps a bias from the heterogeneity. Push-sum de-biases mixing over a directed
graph that is not doubly stochastic, where plain mixing with the same matrices does not average.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mpi" / "programs"))
import lsq  # noqa: E402

import topologies  # noqa: E402
from dsgd.comm import Mixer, SelfCommunicator  # noqa: E402
from dsgd.rules import Diffusion, GradientTracking, OptimizerRule, PushSum  # noqa: E402
from dsgd.schedules import Gossip  # noqa: E402

N, STEPS = 8, 3000


def constant(t):
    return 0.02


def relative_distance(X, x_star):
    return float(np.max(np.linalg.norm(X - x_star, axis=1)) / np.linalg.norm(x_star))


def run(rule, problem, steps=STEPS, lr=constant):
    return lsq.run_rule(rule, Mixer(SelfCommunicator(), N), problem, list(range(N)), lr, steps)


def test_tracking_and_exact_diffusion_reach_the_exact_minimizer_where_dsgd_stays_away():
    problem = lsq.Problem(N, seed=1)
    x_star = problem.minimizer()
    ring = topologies.from_spec("ring", N)
    distances = {
        "gradient-tracking": relative_distance(run(GradientTracking(Gossip(ring)), problem), x_star),
        "exact-diffusion": relative_distance(run(Diffusion(Gossip(ring), exact=True), problem), x_star),
        "dsgd": relative_distance(run(OptimizerRule(Gossip(ring)), problem), x_star),
    }
    print("relative distance to the global minimizer after", STEPS, "steps:", distances)
    assert distances["gradient-tracking"] < 1e-6 and distances["exact-diffusion"] < 1e-6, distances
    assert distances["dsgd"] > 1e-2, distances


def test_dsgd_baseline_matches_its_own_recursion():
    # the baseline above is really D-SGD: check it against the numpy recursion, so the contrast is fair
    problem = lsq.Problem(N, seed=2)
    ring = topologies.from_spec("ring", N)
    got = run(OptimizerRule(Gossip(ring)), problem, steps=40)
    np.testing.assert_allclose(got, lsq.oracle_dsgd(problem, ring.W, constant, 40), rtol=1e-10, atol=1e-10)


def test_push_sum_averages_exactly_over_a_directed_graph_where_plain_mixing_does_not():
    topo = topologies.from_spec("random-out:s=1,seed=3", N)
    assert not np.allclose(topo.W(0).sum(axis=1), 1)  # rows do not sum to 1: not doubly stochastic
    problem = lsq.Problem(N, seed=3)
    problem.A[:] = 0  # zero gradients: pure consensus
    problem.b[:] = 0
    average = problem.x0.mean(axis=0)
    z = run(PushSum(Gossip(topo)), problem, steps=200)
    assert np.max(np.abs(z - average)) < 1e-10
    X = problem.x0.copy()
    for t in range(200):
        X = topo.W(t) @ X
    assert np.max(np.abs(X - average)) > 1e-2  # plain mixing settles on a weighted average


def test_choco_with_the_identity_codec_and_gamma_1_is_plain_gossip():
    from dsgd.compress import parse_codec
    from dsgd.rules import Choco
    problem = lsq.Problem(N, seed=4)
    topo = topologies.from_spec("one-peer-exponential", N)  # time-varying: one accumulator per matrix
    got = run(Choco(Gossip(topo), parse_codec("none"), 1.0, seed=0), problem, steps=40)
    # x_hat + (x_half - x_hat) is x_half only up to round-off, and "none" carries float32 payloads
    # (these buckets are float64): float32 tolerance, not bits
    np.testing.assert_allclose(got, lsq.oracle_dsgd(problem, topo.W, constant, 40), rtol=1e-6, atol=1e-6)

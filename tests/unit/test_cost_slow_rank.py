"""One rank slowed on purpose (dsgd.cost.SlowRank, the trainer's --straggler-rank) in the cost model."""
from __future__ import annotations

import numpy as np
import pytest

from dsgd.cost import Cluster, Link, SlowRank, predict_step, timeline

LINK = Link(1e-5, 1e9)
M, COMPUTE, DELAY = 1e6, 0.01, 0.05


def four_hosts() -> Cluster:
    return Cluster(nodes=4, ranks_per_node=1, intra=LINK, inter=LINK)


def wait(algorithm: str, slow: SlowRank, steps: int = 64) -> float:
    plain = predict_step(algorithm, four_hosts(), M, COMPUTE, steps=steps)
    return predict_step(algorithm, four_hosts(), M, COMPUTE, steps=steps, slow=slow).step_s - plain.step_s


@pytest.mark.parametrize("algorithm", ["csgd", "dsgd:ring", "dsgd:one-peer-exponential", "local:8"])
def test_a_fixed_delay_on_one_rank_costs_every_synchronous_pattern_the_delay(algorithm):
    # the slowed rank's own chain is compute + delay + comm per step, and nobody runs ahead of it
    assert wait(algorithm, SlowRank(1, DELAY)) == pytest.approx(DELAY)


def test_gossip_waits_for_the_slowest_in_neighbour_only_allreduce_for_everyone():
    compute = timeline.add_slow_rank(np.full((1, 4), COMPUTE), SlowRank(1, DELAY))
    comm = np.full((1, 4), 0.001)
    ring = [(3, 1), (0, 2), (1, 3), (2, 0)]  # each rank's in-neighbours on a ring of 4
    gossip = timeline.finish_times(compute, comm, [ring])[0]
    allreduce = timeline.finish_times(compute, comm, [timeline.EVERYONE])[0]
    late, on_time = COMPUTE + DELAY + 0.001, COMPUTE + 0.001
    assert gossip == pytest.approx([late, late, late, on_time])  # rank 3 is two hops from rank 1
    assert allreduce == pytest.approx([late] * 4)


def test_a_random_delay_costs_its_mean_and_is_seeded():
    slow = SlowRank(2, DELAY, random=True, seed=3)
    draws = np.random.default_rng(3).uniform(0.0, 2 * DELAY, 64)
    assert wait("csgd", slow) == pytest.approx(draws.mean())
    assert wait("dsgd:ring", slow) == pytest.approx(draws.mean())
    assert wait("identity", SlowRank(2, DELAY)) == pytest.approx(DELAY)  # the slow rank itself is the step


@pytest.mark.parametrize("make", [lambda: SlowRank(-1, DELAY), lambda: SlowRank(1, -0.1),
                                  lambda: SlowRank(1.5, DELAY), lambda: SlowRank(True, DELAY)])
def test_bad_slow_rank_raises_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_a_slow_rank_outside_the_cluster_raises_value_error():
    with pytest.raises(ValueError, match="not below"):
        predict_step("csgd", four_hosts(), M, COMPUTE, slow=SlowRank(4, DELAY))

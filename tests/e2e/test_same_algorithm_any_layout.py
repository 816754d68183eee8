"""D-SGD is one algorithm however its workers are spread: 4 ranks x 1, 2 x 2, 1 x 4, and in-process simulation."""
from pathlib import Path

import pytest
import torch

from dsgd.comm import SimulatedMixer
from dsgd.config import parse
from dsgd.train.loop import Run
from trainer import TINY, FAST, train, worker_params

STEPS = "12"
DSGD = ["--algorithm", "dsgd", "--topology", "ring", "--steps-per-epoch", STEPS, "--eval-every", STEPS,
        "--seed", "3", *TINY]


@pytest.fixture(scope="module")
def four_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("4x1")
    train(4, out, *DSGD)
    return worker_params(out)


@pytest.mark.parametrize("ranks, per_rank", [(2, 2), (1, 4)])
def test_workers_per_rank_give_the_same_parameters_as_one_worker_per_rank(tmp_path, four_ranks, ranks, per_rank):
    train(ranks, tmp_path, *DSGD, "--workers-per-rank", str(per_rank), "--vectorize", "off")
    got = worker_params(tmp_path)
    # same data per global worker, same mixing order: identical to the last bit
    assert torch.equal(got, four_ranks), (got - four_ranks).abs().max()


@pytest.fixture(scope="module")
def four_ranks_mixed_momentum(tmp_path_factory):
    out = tmp_path_factory.mktemp("4x1-mixed-momentum")
    train(4, out, *DSGD, "--mix-optimizer-state", "true")
    return worker_params(out)


@pytest.mark.parametrize("ranks, per_rank", [(2, 2), (1, 4)])
def test_mixed_momentum_gives_the_same_parameters_however_workers_are_spread(
        tmp_path, four_ranks_mixed_momentum, four_ranks, ranks, per_rank):
    # momentum (FAST has 0.9) is gossiped like the parameters, while the parameter exchange is in flight
    train(ranks, tmp_path, *DSGD, "--mix-optimizer-state", "true", "--workers-per-rank", str(per_rank),
          "--vectorize", "off")
    got = worker_params(tmp_path)
    assert torch.equal(got, four_ranks_mixed_momentum), (got - four_ranks_mixed_momentum).abs().max()
    assert not torch.equal(got, four_ranks)  # the policy did change the trajectory


def test_vectorized_workers_follow_the_same_trajectory(tmp_path, four_ranks):
    train(1, tmp_path, *DSGD, "--workers-per-rank", "4", "--vectorize", "on")
    got = worker_params(tmp_path)
    # one batched convolution sums in another order than four small ones: round-off only
    torch.testing.assert_close(got, four_ranks, rtol=1e-4, atol=1e-4)


def test_trainer_matches_in_process_simulation(tmp_path, four_ranks):
    cfg, _ = parse([*FAST, *DSGD, "--workers-per-rank", "4", "--out", str(tmp_path)])
    run = Run(cfg, SimulatedMixer(4), Path(tmp_path))
    run.run()
    simulated = torch.cat(run.workers.params, dim=1)
    # the simulation mixes in float64 (W @ X); 12 momentum steps carry that round-off forward
    torch.testing.assert_close(simulated, four_ranks, rtol=1e-4, atol=1e-4)
    assert (simulated - four_ranks).abs().max() < 1e-4 * four_ranks.abs().max()
    assert run.mixer.stats.steps["sparse"] == int(STEPS)

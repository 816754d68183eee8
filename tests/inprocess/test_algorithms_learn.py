"""Every algorithm and rule learns real Fashion-MNIST well above chance: the real trainer with 4
workers in this process, on the real Mixer (the same arithmetic as 4 ranks of one,
tests/mpi/test_trainer_layouts.py). The rules do not depend on the model, so they train the small
MLP (0.4 s a run); the CNN learns through the same trainer once, under D-SGD on a ring."""
import math

import pytest
import torch

from trainer import TINY, metrics, train_here, worker_params

PLAIN_SGD = ["--momentum", "0", "--lr", "0.2"]  # the tracking and push-sum rules are defined on momentum-free steps
ALGORITHMS = {
    "csgd": ["--algorithm", "csgd"],
    "local": ["--algorithm", "local", "--local-steps", "4"],
    "postlocal": ["--algorithm", "postlocal", "--local-steps", "4", "--switch-epochs", "0.5"],
    "qsr": ["--algorithm", "qsr", "--local-steps", "2", "--qsr-alpha", "0.1", "--milestones", "0.5"],
    "dsgd-ring": ["--algorithm", "dsgd", "--topology", "ring"],
    "dsgd-grid": ["--algorithm", "dsgd", "--topology", "grid"],  # a torus needs rows, cols >= 3: see below
    "dsgd-exponential": ["--algorithm", "dsgd", "--topology", "exponential"],
    "dsgd-one-peer": ["--algorithm", "dsgd", "--topology", "one-peer-exponential"],
    # momentum buffers gossiped with the parameters (while the parameter exchange is in flight)
    "dsgd-ring-mixed-momentum": ["--algorithm", "dsgd", "--topology", "ring", "--mix-optimizer-state", "true"],
    "gradient-tracking": ["--algorithm", "gradient-tracking", "--topology", "ring", *PLAIN_SGD],
    "d2": ["--algorithm", "d2", "--topology", "exponential", *PLAIN_SGD],
    "exact-diffusion": ["--algorithm", "exact-diffusion", "--topology", "one-peer-exponential", *PLAIN_SGD],
    "qgm": ["--algorithm", "qgm", "--topology", "ring", "--momentum", "0.9", "--nesterov", "true"],
    "sgp": ["--algorithm", "sgp", "--topology", "random-out:s=2,seed=2", *PLAIN_SGD],
    "choco-sign": ["--algorithm", "choco", "--topology", "ring", "--compress", "sign", "--consensus-step", "0.5",
                   "--momentum", "0", "--lr", "0.1"],
    # error-feedback compressed averaging with a random codec, on the torch optimizer (momentum from FAST)
    "local-ef-random-k": ["--algorithm", "local", "--local-steps", "2", "--compress", "random-k:ratio=0.25"],
    "csgd-powersgd": ["--algorithm", "csgd", "--compress", "powersgd:rank=2"],
}
STEPS = "60"  # 60 steps x 4 workers x 32 = 7,680 samples


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_algorithm_learns_fashion_mnist_well_above_chance(tmp_path, name):
    train_here(4, tmp_path, *TINY, *ALGORITHMS[name], "--steps-per-epoch", STEPS, "--epochs", "1", "--eval-every", STEPS)
    last = metrics(tmp_path)[-1]
    assert last["step"] == int(STEPS)
    assert last["test_acc"] > 0.70, last  # chance is 0.10
    assert math.isfinite(last["consensus_distance"])
    for key in ("epoch", "lr", "local_steps", "train_loss", "test_loss", "bytes_sent", "comm_s", "compute_s"):
        assert key in last


def test_the_cnn_learns_fashion_mnist_under_gossip(tmp_path):
    train_here(4, tmp_path, *ALGORITHMS["dsgd-ring"], "--steps-per-epoch", STEPS, "--eval-every", STEPS)
    assert metrics(tmp_path)[-1]["test_acc"] > 0.70


def test_parallel_sgd_keeps_every_worker_identical(tmp_path):
    train_here(4, tmp_path, *TINY, "--algorithm", "csgd", "--steps-per-epoch", "15", "--eval-every", "15")
    params = worker_params(tmp_path)
    assert params.shape[0] == 4
    for i in range(1, 4):
        assert torch.equal(params[i], params[0]), f"worker {i} drifted from worker 0"


def test_gossip_consensus_distance_stays_bounded_and_workers_differ(tmp_path):
    train_here(4, tmp_path, *TINY, "--algorithm", "dsgd", "--topology", "ring", "--steps-per-epoch", "40",
               "--eval-every", "10")
    distances = [m["consensus_distance"] for m in metrics(tmp_path)]
    assert len(distances) == 4
    assert all(0 < d < 1.0 for d in distances), distances
    params = worker_params(tmp_path)
    assert not torch.equal(params[0], params[1])


def test_torus_gossip_learns_with_nine_workers(tmp_path):
    train_here(9, tmp_path, *TINY, "--algorithm", "dsgd", "--topology", "torus", "--steps-per-epoch", STEPS,
               "--eval-every", STEPS)
    assert metrics(tmp_path)[-1]["test_acc"] > 0.70


def test_mixing_optimizer_state_trains_like_keeping_it_local(tmp_path):
    """Ring, momentum 0.9, no normalization, 40 steps; both policies learn alike."""
    acc = {}
    for policy in ("false", "true"):
        out = tmp_path / policy
        train_here(4, out, *TINY, "--algorithm", "dsgd", "--topology", "ring", "--mix-optimizer-state", policy,
                   "--steps-per-epoch", "40", "--eval-every", "40")
        acc[policy] = metrics(out)[-1]["test_acc"]
    assert acc["true"] > 0.70 and abs(acc["true"] - acc["false"]) < 0.05, acc

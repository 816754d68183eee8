"""The trainer's one-process paths against each other: a rank's workers trained in one batched pass
(vectorized) and the dense in-process simulation (W @ X in float64, sharing no code with the
exchange) follow the trajectory of the serial workers on the real Mixer, up to round-off."""
from pathlib import Path

import torch

from dsgd.comm import SimulatedMixer
from dsgd.config import parse
from dsgd.train.loop import Run
from trainer import FAST, TINY, train_here, worker_params

STEPS = "12"
DSGD = ["--algorithm", "dsgd", "--topology", "ring", "--steps-per-epoch", STEPS, "--eval-every", STEPS,
        "--seed", "3", *TINY]


def test_vectorized_workers_follow_the_serial_trajectory(tmp_path):
    train_here(4, tmp_path / "serial", *DSGD, "--vectorize", "off")
    train_here(4, tmp_path / "vectorized", *DSGD, "--vectorize", "on")
    # one batched pass sums in another order than four small ones: round-off only
    torch.testing.assert_close(worker_params(tmp_path / "vectorized"), worker_params(tmp_path / "serial"),
                               rtol=1e-4, atol=1e-4)


def test_trainer_on_the_mixer_matches_the_dense_simulation(tmp_path):
    train_here(4, tmp_path / "mixer", *DSGD)
    real = worker_params(tmp_path / "mixer")
    cfg, _ = parse([*FAST, *DSGD, "--workers-per-rank", "4", "--out", str(tmp_path / "simulated")])
    run = Run(cfg, SimulatedMixer(4), Path(tmp_path / "simulated"))
    run.run()
    simulated = torch.cat(run.workers.params, dim=1)
    # the simulation mixes in float64 (W @ X); 12 momentum steps carry that round-off forward
    torch.testing.assert_close(simulated, real, rtol=1e-4, atol=1e-4)
    assert (simulated - real).abs().max() < 1e-4 * real.abs().max()
    assert run.mixer.stats.steps["sparse"] == int(STEPS)

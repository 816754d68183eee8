"""Extending a finished QSR run (`--resume --epochs MORE`): what it equals and where it differs.

QSR's last round is cut at the run's end so the run ends on one averaged model. An extension
therefore equals training longer from the start when the old end falls on a round boundary of
the longer run, and otherwise differs by that one extra average at the old end; from the resume
on it follows the longer run's rounds. Two workers in one process, the MLP, 20 steps.
"""
import pytest
import torch

from dsgd.train.cli import main

# lr 0.05 throughout and alpha 0.1: H = max(2, (0.1 / 0.05)^2) = 4, rounds start at 0, 4, 8, 12, 16
QSR = ["--algorithm", "qsr", "--local-steps", "2", "--qsr-alpha", "0.1", "--decay", "constant", "--lr", "0.05",
       "--model", "mlp", "--norm", "none", "--workers-per-rank", "2", "--steps-per-epoch", "10",
       "--eval-every", "10", "--eval-samples", "100", "--checkpoint-every", "2", "--keep-checkpoints", "0"]


def workers(out, step):
    """Every worker's parameters at `step`, one row per worker."""
    state = torch.load(out / "checkpoints" / f"step-{step:08d}" / "rank0.pt", weights_only=True)
    return torch.cat(list(state["workers"]["params"]), dim=1)


@pytest.fixture(scope="module")
def longer(tmp_path_factory):
    out = tmp_path_factory.mktemp("qsr-longer")
    assert main([*QSR, "--epochs", "2", "--out", str(out)]) == 0
    return out


def test_an_extension_from_a_round_boundary_equals_training_longer(tmp_path, longer):
    out = tmp_path / "run"
    assert main([*QSR, "--epochs", "1.2", "--out", str(out)]) == 0  # 12 steps: rounds 0, 4, 8 end at 12
    assert main(["--resume", str(out), "--epochs", "2"]) == 0
    assert torch.equal(workers(out, 20), workers(longer, 20))


def test_an_extension_from_a_cut_round_averages_once_more_at_the_old_end(tmp_path, longer):
    out = tmp_path / "run"
    assert main([*QSR, "--epochs", "1", "--out", str(out)]) == 0  # 10 steps: the round at 8 is cut to 2 steps
    w = workers(out, 10)
    assert torch.equal(w[0], w[1])  # the cut round averaged: the run ended on one model
    w = workers(longer, 10)
    assert not torch.equal(w[0], w[1])  # the longer run is mid-round there (8..11)
    assert main(["--resume", str(out), "--epochs", "2"]) == 0
    w = workers(out, 12)
    assert torch.equal(w[0], w[1])  # it finished the longer run's round 8..11, not a new one from 10
    assert not torch.equal(workers(out, 20), workers(longer, 20))

"""A run resumed from a checkpoint ends with exactly the parameters of the run that never stopped."""
import shutil

import pytest
import torch

from trainer import TINY, metrics, train, worker_params

CASES = {
    "local-batchnorm": ["--algorithm", "local", "--local-steps", "3", "--norm", "bn", "--bn-batches", "2"],
    "qsr": ["--algorithm", "qsr", "--local-steps", "2", "--qsr-alpha", "0.08", "--milestones", "0.5"],
    "dsgd-time-varying": ["--algorithm", "dsgd", "--topology", "one-peer-exponential", "--momentum", "0.9"],
}


@pytest.mark.parametrize("name", list(CASES))
def test_resume_from_a_middle_checkpoint_is_bit_exact(tmp_path, name):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    flags = [*TINY, *CASES[name], "--steps-per-epoch", "24", "--eval-every", "8", "--checkpoint-every", "8",
             "--keep-checkpoints", "0"]
    train(4, full, *flags)
    shutil.copytree(full, resumed)
    train(4, resumed, "--resume", str(resumed / "checkpoints" / "step-00000008"))
    assert torch.equal(worker_params(resumed), worker_params(full))
    assert [m["step"] for m in metrics(resumed)] == [8, 16, 24]  # rows past the checkpoint were redone once
    assert [m["test_acc"] for m in metrics(resumed)] == [m["test_acc"] for m in metrics(full)]


def test_extending_a_finished_run_equals_training_longer_from_the_start(tmp_path):
    short, long_ = tmp_path / "short", tmp_path / "long"
    flags = [*TINY, "--algorithm", "dsgd", "--topology", "exponential", "--steps-per-epoch", "10", "--eval-every", "10"]
    train(4, short, *flags, "--epochs", "1")
    train(4, short, "--resume", str(short), "--epochs", "2")
    train(4, long_, *flags, "--epochs", "2")
    assert torch.equal(worker_params(short), worker_params(long_))


def test_resume_with_another_number_of_workers_is_refused_with_one_line_unless_resized(tmp_path):
    train(2, tmp_path, *TINY, "--algorithm", "local", "--local-steps", "2", "--steps-per-epoch", "4", "--eval-every", "4")
    res = train(4, tmp_path, "--resume", str(tmp_path), ok=False)
    assert res.returncode == 2
    assert ("cannot resume: the checkpoint has 2 workers (2 ranks x 1), this run has 4 (4 x 1); give "
            "--resize true to continue with 4 workers (not bit-exact)") in res.stdout
    assert "Traceback" not in res.stdout

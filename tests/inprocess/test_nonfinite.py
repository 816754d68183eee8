"""A run whose loss becomes NaN stops at that step with one line naming it, and keeps the last good
checkpoint (one rank among several: tests/e2e/test_one_rank_fails.py)."""
import torch

from trainer import TINY, latest_step, train_here, worker_params


def test_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    res = train_here(2, tmp_path, *TINY, "--algorithm", "local", "--local-steps", "2", "--lr", "1e6",
                     "--steps-per-epoch", "30", "--eval-every", "30", "--checkpoint-every", "1", ok=False)
    assert res.returncode != 0
    line = next(l for l in res.stdout.splitlines() if l.startswith("dsgd.train: error:"))
    assert " at step " in line and ("nan" in line or "inf" in line or "not finite" in line), line
    assert "the last good checkpoint is" in line
    good = latest_step(tmp_path)
    assert good < 30
    assert torch.isfinite(worker_params(tmp_path, good)).all()

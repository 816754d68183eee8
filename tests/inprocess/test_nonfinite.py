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


def test_running_out_of_memory_ends_the_run_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """torch's CPU allocator raises a plain RuntimeError; the run names it as memory, not as an internal error."""
    calls, forward = [0], torch.nn.Linear.forward

    def short_of_memory(self, x):
        calls[0] += 1
        if calls[0] > 40:  # a few steps in, after checkpoints were written
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                               "memory: you tried to allocate 76800000000 bytes. Error code 12 (Cannot allocate memory)")
        return forward(self, x)

    monkeypatch.setattr(torch.nn.Linear, "forward", short_of_memory)
    res = train_here(2, tmp_path, *TINY, "--steps-per-epoch", "30", "--eval-every", "30", "--checkpoint-every", "1",
                     ok=False)
    assert res.returncode == 3, res.stdout[-3000:]
    errors = [l for l in res.stdout.splitlines() if l.startswith("dsgd.train")]
    assert len(errors) == 1 and "Traceback" not in res.stdout, res.stdout[-3000:]
    assert errors[0].startswith("dsgd.train: error: rank 0 ran out of memory (an allocation of 76.8 GB failed); a "
                                "smaller --batch-size"), errors[0]
    good = latest_step(tmp_path)
    assert 0 < good < 30 and f"the last good checkpoint is {tmp_path}/checkpoints/step-{good:08d}" in errors[0]

"""Resuming with another split of the same workers over ranks continues bit for bit; resizing
(another number of workers) is opt-in, keeps the workers that remain, and trains on."""
from pathlib import Path

import pytest
import torch

from dsgd.comm import SimulatedMixer
from dsgd.config import parse
from dsgd.train import checkpoint as ckpt
from dsgd.train.loop import Run
from trainer import FAST, TINY, metrics, train, train_here, worker_params

STEPS = 8   # steps per epoch: one resume per epoch
CASES = {
    # momentum gossiped with the parameters: optimizer state must follow its worker
    "dsgd-mixed-momentum": ["--algorithm", "dsgd", "--topology", "ring", "--mix-optimizer-state", "true"],
    # a rule with its own per-worker state (the tracker and the previous gradient)
    "gradient-tracking": ["--algorithm", "gradient-tracking", "--topology", "ring", "--momentum", "0"],
}


def flags(name):
    return [*TINY, *CASES[name], "--steps-per-epoch", str(STEPS), "--eval-every", str(STEPS), "--vectorize", "off"]


# One chain of real layouts here; every rule's own state regrouped from one layout into another
# (1 x 4 -> 2 x 2, gradient tracking's tracker included) is tests/mpi/test_trainer_layouts.py.
@pytest.mark.parametrize("name, layouts", [("dsgd-mixed-momentum", [(2, 4), (1, 8)])])
def test_resume_in_other_layouts_equals_the_straight_run(tmp_path, name, layouts):
    straight, chain = tmp_path / "straight", tmp_path / "chain"
    epochs = len(layouts)
    train_here(8, straight, *flags(name), "--epochs", str(epochs))  # the same 8 workers, one process
    (ranks, per_rank), *rest = layouts
    train(ranks, chain, *flags(name), "--workers-per-rank", str(per_rank), "--epochs", "1")
    for epoch, (ranks, per_rank) in enumerate(rest, start=2):
        train(ranks, chain, "--resume", str(chain), "--workers-per-rank", str(per_rank), "--epochs", str(epoch))
    assert torch.equal(worker_params(chain), worker_params(straight))
    rows, want = metrics(chain), metrics(straight)
    assert [r["step"] for r in rows] == [STEPS * e for e in range(1, epochs + 1)]
    assert [r["test_acc"] for r in rows] == [r["test_acc"] for r in want]
    assert [r["bytes_sent"] for r in rows] == [r["bytes_sent"] for r in want]  # counted per worker
    for r, w in zip(rows, want):  # summed over ranks in another grouping: equal up to round-off
        assert r["train_loss"] == pytest.approx(w["train_loss"], rel=1e-12)


@pytest.fixture(scope="module")
def eight_workers(tmp_path_factory):
    """A D-SGD run of 8 workers (2 ranks x 4) with momentum, stopped after one epoch: the resize tests
    read a checkpoint that several ranks wrote."""
    out = tmp_path_factory.mktemp("eight")
    train(2, out, *TINY, "--algorithm", "dsgd", "--topology", "ring", "--steps-per-epoch", str(STEPS),
          "--eval-every", str(STEPS), "--workers-per-rank", "4", "--epochs", "1")
    return out


@pytest.mark.parametrize("n", [6, 10])
def test_resize_keeps_the_workers_that_remain_and_starts_new_ones_from_the_average(eight_workers, n):
    saved = worker_params(eight_workers)  # (8, parameters)
    cfg, _ = parse([*FAST, *TINY, "--algorithm", "dsgd", "--topology", "ring", "--steps-per-epoch", str(STEPS),
                    "--workers-per-rank", str(n), "--resize", "true", "--out", str(eight_workers)])
    run = Run(cfg, SimulatedMixer(n), Path(eight_workers))
    run.restore(str(eight_workers))
    got = torch.cat(run.workers.params, dim=1)
    kept = min(n, 8)
    assert torch.equal(got[:kept], saved[:kept])
    average = saved.double().mean(0).float()
    for row in got[kept:]:
        torch.testing.assert_close(row, average, rtol=0, atol=1e-6)
    old_momentum = ckpt.load_rank(ckpt.step_dir(eight_workers, STEPS), 0)["workers"]["optim"][0]["state"]
    for k in range(n):
        state = run.workers.optimizers[k].state_dict()["state"]
        if k < kept:  # worker k (held by old rank k // 4) keeps its momentum
            mine = ckpt.load_rank(ckpt.step_dir(eight_workers, STEPS), k // 4)["workers"]["optim"][k % 4]["state"]
            assert all(torch.equal(state[i]["momentum_buffer"], mine[i]["momentum_buffer"]) for i in mine)
        else:     # a new worker's momentum is zero: it steps as if it had none
            assert all(not state[i]["momentum_buffer"].any() for i in old_momentum)
    assert run.step == STEPS


def test_resize_from_8_to_6_workers_under_mpirun_continues_and_trains(tmp_path, eight_workers):
    import shutil
    out = tmp_path / "resized"
    shutil.copytree(eight_workers, out)
    refused = train(2, out, "--resume", str(out), "--workers-per-rank", "3", ok=False)
    assert refused.returncode == 2 and "--resize true" in refused.stdout
    train(2, out, "--resume", str(out), "--workers-per-rank", "3", "--resize", "true", "--epochs", "3")
    rows = metrics(out)
    events = [r for r in rows if r.get("event") == "resize"]
    assert events == [{"step": STEPS, "event": "resize", "workers_before": 8, "workers_after": 6}]
    evals = [r for r in rows if "test_acc" in r]
    assert evals[-1]["step"] > STEPS and worker_params(out).shape[0] == 6
    assert evals[-1]["test_acc"] > 0.5  # ten classes: chance is 0.1; it kept learning after the resize


def test_resize_changes_only_the_number_of_workers(eight_workers):
    cfg, _ = parse([*FAST, *TINY, "--algorithm", "csgd", "--steps-per-epoch", str(STEPS), "--workers-per-rank", "6",
                    "--resize", "true", "--out", str(eight_workers)])
    run = Run(cfg, SimulatedMixer(6), Path(eight_workers))
    with pytest.raises(ckpt.CheckpointError, match="cannot resume: the checkpoint has algorithm='dsgd', this run "
                                                   "has algorithm='csgd'"):
        run.restore(str(eight_workers))

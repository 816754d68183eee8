"""A run resumed from a checkpoint ends with exactly the parameters of the run that never stopped:
every rule with state of its own, in this process (4 workers); across ranks: tests/mpi/test_trainer_layouts.py."""
import shutil

import pytest
import torch

from trainer import TINY, metrics, train_here, worker_params

PLAIN_SGD = ["--momentum", "0", "--lr", "0.2"]  # these rules are defined on momentum-free SGD steps
CASES = {
    "local-batchnorm": ["--algorithm", "local", "--local-steps", "3", "--norm", "bn", "--bn-batches", "2"],
    "qsr": ["--algorithm", "qsr", "--local-steps", "2", "--qsr-alpha", "0.08", "--milestones", "0.5"],
    "dsgd-time-varying": ["--algorithm", "dsgd", "--topology", "one-peer-exponential", "--momentum", "0.9"],
}
# Rules with state of their own; their flags are shared with the layout tests (RULES there).
RULES = {
    "gradient-tracking": ["--algorithm", "gradient-tracking", "--topology", "ring", *PLAIN_SGD],
    "d2": ["--algorithm", "d2", "--topology", "exponential", *PLAIN_SGD],
    "exact-diffusion": ["--algorithm", "exact-diffusion", "--topology", "one-peer-exponential", *PLAIN_SGD],
    "qgm": ["--algorithm", "qgm", "--topology", "ring", "--momentum", "0.9", "--nesterov", "true"],
    "sgp": ["--algorithm", "sgp", "--topology", "random-out:s=2,seed=2", *PLAIN_SGD],
    "choco-sign": ["--algorithm", "choco", "--topology", "ring", "--compress", "sign", "--consensus-step", "0.5",
                   "--momentum", "0", "--lr", "0.1"],
    # a random codec inside gossip: its draws are keyed by (seed, step, worker), so resume agrees
    "choco-qsgd": ["--algorithm", "choco", "--topology", "one-peer-exponential", "--compress",
                   "qsgd:levels=8,scaled=true", "--consensus-step", "0.1", *PLAIN_SGD],
    "local-ef-random-k": ["--algorithm", "local", "--local-steps", "2", "--compress", "random-k:ratio=0.25"],
    "csgd-powersgd": ["--algorithm", "csgd", "--compress", "powersgd:rank=2"],
    # outer optimizers: anchors, each worker's Nesterov state, error-feedback memory, a fragment in flight
    "diloco": ["--algorithm", "diloco", "--local-steps", "4"],
    "gossip-diloco-sign": ["--algorithm", "gossip-diloco", "--topology", "one-peer-exponential", "--local-steps", "4",
                           "--compress", "sign", "--outer-optimizer", "sgd", "--outer-lr", "1", "--outer-momentum",
                           "0.5"],
    "streaming-diloco": ["--algorithm", "streaming-diloco", "--local-steps", "4", "--fragments", "3",
                         "--fragment-delay", "2"],
    "sparta": ["--algorithm", "sparta", "--sparta-fraction", "0.1"],
}
RULE_FLAGS = [*TINY, "--steps-per-epoch", "12", "--eval-every", "6", "--checkpoint-every", "6",
              "--keep-checkpoints", "0", "--seed", "5"]
# the rules' arithmetic is the same for serial and vectorized workers; two of them check it end to end
VECTORIZED = {"gradient-tracking", "sgp"}


@pytest.mark.parametrize("name", list(CASES))
def test_resume_from_a_middle_checkpoint_is_bit_exact(tmp_path, name):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    flags = [*TINY, *CASES[name], "--steps-per-epoch", "24", "--eval-every", "8", "--checkpoint-every", "8",
             "--keep-checkpoints", "0"]
    train_here(4, full, *flags)
    shutil.copytree(full, resumed)
    train_here(4, resumed, "--resume", str(resumed / "checkpoints" / "step-00000008"))
    assert torch.equal(worker_params(resumed), worker_params(full))
    assert [m["step"] for m in metrics(resumed)] == [8, 16, 24]  # rows past the checkpoint were redone once
    assert [m["test_acc"] for m in metrics(resumed)] == [m["test_acc"] for m in metrics(full)]


@pytest.mark.parametrize("name", list(RULES))
def test_rule_resumes_exactly(tmp_path, name):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_here(4, straight, *RULE_FLAGS, *RULES[name])
    shutil.copytree(straight, resumed)
    train_here(4, resumed, "--resume", str(resumed / "checkpoints" / "step-00000006"))
    assert torch.equal(worker_params(resumed), worker_params(straight))
    assert [m["test_acc"] for m in metrics(resumed)] == [m["test_acc"] for m in metrics(straight)]
    if name in VECTORIZED:
        vectorized = tmp_path / "vectorized"
        train_here(4, vectorized, *RULE_FLAGS, *RULES[name], "--vectorize", "on")
        # one batched pass sums in another order than four small ones: round-off only
        torch.testing.assert_close(worker_params(vectorized), worker_params(straight), rtol=1e-4, atol=1e-4)


def test_extending_a_finished_run_equals_training_longer_from_the_start(tmp_path):
    short, long_ = tmp_path / "short", tmp_path / "long"
    flags = [*TINY, "--algorithm", "dsgd", "--topology", "exponential", "--steps-per-epoch", "10", "--eval-every", "10"]
    train_here(4, short, *flags, "--epochs", "1")
    train_here(4, short, "--resume", str(short), "--epochs", "2")
    train_here(4, long_, *flags, "--epochs", "2")
    assert torch.equal(worker_params(short), worker_params(long_))


def test_resume_with_another_number_of_workers_is_refused_with_one_line_unless_resized(tmp_path):
    train_here(2, tmp_path, *TINY, "--algorithm", "local", "--local-steps", "2", "--steps-per-epoch", "4",
               "--eval-every", "4")
    res = train_here(4, tmp_path, "--resume", str(tmp_path), ok=False)
    assert res.returncode == 2
    # one rank holds them all: another --workers-per-rank gives the same workers back
    assert ("dsgd.train: error: cannot resume: the checkpoint has 2 workers (1 ranks x 2), this run has 4 (1 x 4); "
            "give --workers-per-rank 2 for the same 2 workers, or --resize true to continue with 4 workers "
            "(not bit-exact)\n") == res.stdout
    assert "Traceback" not in res.stdout


def test_resuming_a_ring_run_on_too_few_workers_says_how_to_keep_its_workers(tmp_path):
    """The worker count is compared before the topology is built: a ring of one worker would
    otherwise be the error the user reads, not how to resume."""
    train_here(4, tmp_path, *TINY, "--algorithm", "dsgd", "--topology", "ring", "--steps-per-epoch", "2",
               "--eval-every", "2")
    res = train_here(1, tmp_path, "--resume", str(tmp_path), ok=False)
    assert res.returncode == 2
    assert res.stdout == ("dsgd.train: error: cannot resume: the checkpoint has 4 workers (1 ranks x 4), this run "
                          "has 1 (1 x 1); give --workers-per-rank 4 for the same 4 workers, or --resize true to "
                          "continue with 1 workers (not bit-exact)\n")

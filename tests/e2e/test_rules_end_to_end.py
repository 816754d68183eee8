"""The newer rules through the real trainer: they learn, their results do not depend on the layout,
and a resumed run equals the straight one, bit for bit (serial workers)."""
import shutil

import pytest
import torch

from trainer import TINY, metrics, train, worker_params

PLAIN_SGD = ["--momentum", "0", "--lr", "0.2"]  # these rules are defined on momentum-free SGD steps
RULES = {
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
# the rules' arithmetic is the same for serial and vectorized workers; two of them check it end to end
VECTORIZED = {"gradient-tracking", "sgp"}
# averages through allreduce sum in the MPI library's order, which depends on the layout: round-off only
ALLREDUCE_AVERAGES = {"csgd-powersgd"}
# a random codec inside gossip: its draws are keyed by (seed, step, worker), so layouts and resume agree
EXACTNESS = {**RULES, "choco-qsgd": ["--algorithm", "choco", "--topology", "one-peer-exponential", "--compress",
                                     "qsgd:levels=8,scaled=true", "--consensus-step", "0.1", *PLAIN_SGD]}
STEPS = "60"


@pytest.mark.parametrize("name", list(RULES))
def test_rule_learns_fashion_mnist_well_above_chance(tmp_path, name):
    # 4 workers on 2 ranks: the same training as 4 ranks of one (the layout test below shows it), two
    # fewer processes to start on a 2-core machine
    train(2, tmp_path, *RULES[name], "--workers-per-rank", "2", "--steps-per-epoch", STEPS, "--eval-every", STEPS)
    last = metrics(tmp_path)[-1]
    assert last["step"] == int(STEPS) and last["test_acc"] > 0.70, last  # chance is 0.10


@pytest.mark.parametrize("name", list(EXACTNESS))
def test_rule_is_the_same_on_any_layout_and_resumes_exactly(tmp_path, name):
    flags = [*TINY, *EXACTNESS[name], "--steps-per-epoch", "12", "--eval-every", "6", "--checkpoint-every", "6",
             "--keep-checkpoints", "0", "--seed", "5"]
    train(4, tmp_path / "4x1", *flags)
    reference = worker_params(tmp_path / "4x1")
    for ranks, per_rank in [(2, 2), (1, 4)]:
        out = tmp_path / f"{ranks}x{per_rank}"
        train(ranks, out, *flags, "--workers-per-rank", str(per_rank), "--vectorize", "off")
        got = worker_params(out)
        if name in ALLREDUCE_AVERAGES:
            torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(got, reference), f"{ranks}x{per_rank}: {(got - reference).abs().max()}"
    if name in VECTORIZED:
        vectorized = tmp_path / "1x4-vectorized"
        train(1, vectorized, *flags, "--workers-per-rank", "4", "--vectorize", "on")
        # one batched pass sums in another order than four small ones: round-off only
        torch.testing.assert_close(worker_params(vectorized), reference, rtol=1e-4, atol=1e-4)
    # resumed in the 2 x 2 layout: several ranks and several workers per rank in one file, two processes
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "2x2", resumed)
    train(2, resumed, "--resume", str(resumed / "checkpoints" / "step-00000006"))
    assert torch.equal(worker_params(resumed), worker_params(tmp_path / "2x2"))
    assert [m["test_acc"] for m in metrics(resumed)] == [m["test_acc"] for m in metrics(tmp_path / "2x2")]

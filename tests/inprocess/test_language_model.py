"""The command line trains a language model as it trains an image classifier: --model gpt on the
fortunes text, next-token loss, perplexity in every evaluation row, exact resume."""
import math
import shutil

import pytest
import torch

from dsgd.data.text import FORTUNES
from trainer import metrics, train_here, worker_params

pytestmark = pytest.mark.skipif(not FORTUNES.is_dir(), reason="the fortunes corpus is not installed")

LM = ["--dataset", "fortunes", "--model", "gpt", "--context", "32", "--optimizer", "adamw", "--lr", "0.003",
      "--batch-size", "16", "--eval-samples", "256", "--log-every", "1000"]


def test_local_adamw_learns_the_bytes_of_english_and_reports_perplexity(tmp_path):
    train_here(4, tmp_path, *LM, "--algorithm", "local", "--local-steps", "4", "--steps-per-epoch", "40",
               "--eval-every", "20", "--eval-on-start", "true")
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == [0, 20, 40]
    for r in rows:
        assert r["test_perplexity"] == pytest.approx(math.exp(r["test_loss"]))
    assert rows[0]["test_loss"] > 5.0                     # untrained: about uniform over 256 bytes (5.55)
    assert rows[-1]["test_loss"] < 3.6                    # English bytes are far from uniform
    assert 0.1 < rows[-1]["test_acc"] < 1                 # next-byte accuracy
    assert rows[-1]["bytes_sent"] > 0


def test_a_language_model_run_resumes_bit_for_bit(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    flags = [*LM, "--algorithm", "dsgd", "--topology", "ring", "--steps-per-epoch", "8", "--eval-every", "4",
             "--checkpoint-every", "4", "--keep-checkpoints", "0"]
    train_here(4, straight, *flags)
    shutil.copytree(straight, resumed)
    train_here(4, resumed, "--resume", str(resumed / "checkpoints" / "step-00000004"))
    assert torch.equal(worker_params(resumed), worker_params(straight))
    assert [r["test_loss"] for r in metrics(resumed)] == [r["test_loss"] for r in metrics(straight)]


def test_another_context_length_is_refused_on_resume(tmp_path):
    train_here(2, tmp_path, *LM, "--steps-per-epoch", "2", "--eval-every", "2")
    res = train_here(2, tmp_path, "--resume", str(tmp_path), "--context", "16", ok=False)
    assert res.returncode != 0
    assert "the checkpoint has context=32, this run has context=16" in res.stdout

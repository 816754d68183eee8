"""A label-skewed run: 4 workers, Dirichlet(0.1) parts, the tiny MLP; what it writes is checked against
the parts and zeta2 computed again here."""
import json

import numpy as np
import torch
import yaml

from trainer import TINY, metrics, train_here, worker_params

from dsgd.comm.simulated import SimulatedMixer
from dsgd.config import from_dict
from dsgd.data.datasets import load_dataset
from dsgd.data.partition import class_histogram
from dsgd.models import build_model
from dsgd.train import build
from dsgd.train.heterogeneity import Heterogeneity


def test_dirichlet_run_writes_its_partition_and_heterogeneity_metrics(tmp_path):
    train_here(4, tmp_path, *TINY, "--norm", "gn", "--partition", "dirichlet:alpha=0.1",
          "--steps-per-epoch", "4", "--epochs", "1", "--eval-every", "2", "--eval-on-start", "true",
          "--eval-samples", "500", "--probe-samples", "64")
    doc = json.loads((tmp_path / "partition.json").read_text())
    counts = np.array(doc["counts"])
    assert doc["partition"] == "dirichlet:alpha=0.1" and counts.shape == (4, 10)
    assert counts.sum() == 60_000 and (counts.sum(axis=1) > 0).all()
    assert (tmp_path / "partition.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == [0, 2, 4]
    for r in rows:
        assert 0 <= r["local_test_acc_min"] <= r["local_test_acc_mean"] <= 1, r
        assert r["zeta2"] >= 0 and np.isfinite(r["zeta2"]), r
    # at the start every worker holds the same model, so each one's accuracy is the average's
    assert rows[0]["local_test_acc_min"] == rows[0]["local_test_acc_mean"] == rows[0]["test_acc"]

    # the same parts and step-0 zeta2 computed again in this one process, all 4 workers at once
    cfg = from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    train_set = load_dataset("fashion-mnist", train=True)
    parts = build.partition(cfg, 4, train_set)
    assert class_histogram(train_set.labels.numpy(), parts, 10).tolist() == doc["counts"]
    model = build_model("mlp", 1, 10, 28, norm="gn", n_groups=cfg.model.n_groups)
    torch.nn.utils.vector_to_parameters(worker_params(tmp_path, 0)[0], model.parameters())
    het = Heterogeneity(train_set, parts, range(4), 64, cfg.run.seed, "cpu")
    expected = het.zeta2(model, SimulatedMixer(4))
    assert expected > 0
    assert abs(rows[0]["zeta2"] - expected) <= 1e-4 * expected, (rows[0]["zeta2"], expected)

"""The lab's communication-pattern experiment in quick mode: every part once (one rate, one seed, 6
steps) on 4 namespace hosts behind shaped links, and its report. Needs root, as the lab does."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsgd.lab.preflight import why_not_here

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CONFIGS = ["C-SGD (allreduce)", "local SGD (H=8)", "D-SGD ring", "D-SGD exponential", "D-SGD one-peer exp.",
           "CHOCO sign (ring)", "PowerSGD C-SGD (rank 2)", "DiLoCo (H=8)"]


def test_quick_lab_patterns_measure_every_part_and_report_them(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # the venv's mpirun
    reason = why_not_here(env)
    if reason:
        pytest.skip(reason)
    res = subprocess.run([sys.executable, "experiments/lab_patterns.py", "all", "--quick", "--timeout", "300",
                          "--out", str(tmp_path), "--to", str(tmp_path / "to")],
                         capture_output=True, text=True, timeout=1200, cwd=REPO, env=env)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    runs = json.loads((tmp_path / "to" / "results.json").read_text())["runs"]
    assert runs["complete"] and runs["settings"]["rates"] == ["100mbit"] and runs["settings"]["seeds"] == [0]
    assert [t["config"] for t in runs["train"]] == CONFIGS
    assert sorted((t["config"], t["arm"]) for t in runs["straggler"]) == sorted(
        (c, arm) for c in ("C-SGD (allreduce)", "D-SGD ring") for arm in ("none", "fixed", "random"))
    for t in runs["train"] + runs["straggler"] + runs["fp16"]:
        assert t["step_ms"] > 0 and t["curve"][-1][0] == 6 and 0 <= t["curve"][-1][2] <= 1, t["config"]
        # what crossed the shaped veth links (the kernel's count) is at least what dsgd sent
        assert t["kernel_mb_per_step"] * 1e6 >= t["dsgd_bytes_per_step"], t["config"]
    assert set(runs["mix"]) == set(runs["compress"]) == {"100mbit"}
    md = (tmp_path / "to" / "README.md").read_text()
    assert md.startswith("# Communication patterns on the lab: 4 hosts x 1 rank at 100mbit")
    assert (tmp_path / "to" / "accuracy_vs_time.png").read_bytes()[:8] == PNG_MAGIC

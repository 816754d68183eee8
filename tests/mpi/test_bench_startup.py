"""`python -m dsgd.bench startup` for real, once: it times --help and a one-step job on the lines
this checkout's launcher gives, and reports them as JSON."""
import json
import subprocess
import sys

from dsgd import launcher


def test_one_repeat_times_help_and_a_one_step_job():
    res = subprocess.run([sys.executable, "-m", "dsgd.bench", "startup", "--repeats", "1", "--json"],
                         capture_output=True, text=True, timeout=300, cwd=launcher.REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["benchmark"] == "startup" and "baseline" not in report
    assert set(report["current"]) == {"help", "train"}
    assert all(t["repeats"] == 1 and t["min_s"] == t["median_s"] == t["max_s"] > 0 for t in report["current"].values())
    train = report["lines"]["current"]["train"]
    assert train.startswith("mpirun") and " -np 1 " in train and "--steps-per-epoch 1" in train
    assert "btl '^ofi'" in train  # one host: no fabric probe


def test_a_baseline_that_is_not_a_checkout_is_one_line_and_status_2(tmp_path):
    res = subprocess.run([sys.executable, "-m", "dsgd.bench", "startup", "--baseline", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, cwd=launcher.REPO)
    assert res.returncode == 2
    assert f"--baseline {tmp_path} is not a dsgd checkout (no dsgd/train/cli.py)" in res.stderr
    assert "Traceback" not in res.stderr

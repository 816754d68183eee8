"""The failure-injection experiment in quick mode: an elastic trainer run of 2 ranks x 2 workers that
loses rank 1 while a checkpoint is written, beside the same run without failures, and its report."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_quick_failure_injection_finishes_both_runs_and_reports_them(tmp_path):
    res = subprocess.run([sys.executable, "experiments/elastic_failures.py", "all", "--quick", "--timeout", "300",
                          "--out", str(tmp_path), "--to", str(tmp_path / "to")],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    data = json.loads((tmp_path / "to" / "results.json").read_text())
    uninterrupted, failed = sorted(data["runs"], key=lambda r: r["failures"])
    assert (uninterrupted["kills"], failed["kills"]) == ([], [[1, "checkpoint", 6]])
    assert uninterrupted["final_step"] == failed["final_step"] == 24  # the survivors finished the run
    [change] = failed["changes"]
    assert (change["lost_ranks"], change["workers_before"], change["workers_after"]) == ([1], 4, 2)
    assert change["recovered_s"] < 10
    for r in data["runs"]:
        assert 0.1 < r["test_acc"] <= 1, r  # better than chance (0.1)
        run_dir = tmp_path / ("seed0-failures" if r["failures"] else "seed0-uninterrupted")
        job = json.loads((run_dir / "job.json").read_text())
        assert job["status"] == 0 and job["command"] == r["command"], job
    summary = data["summary"]["trainer"]
    assert summary["changes"] == 1 and summary["failures"]["test_acc"] == [failed["test_acc"]]
    md = (tmp_path / "to" / "README.md").read_text()
    assert md.startswith("# Training through lost ranks: 2 ranks, 1 killed per run")
    assert "| 0 | failures | 1@checkpoint:6 | 2 |" in md and "Every run reached its last step" in md
    assert "non-zero exit status" not in md
    assert (tmp_path / "to" / "accuracy.png").read_bytes()[:8] == PNG_MAGIC

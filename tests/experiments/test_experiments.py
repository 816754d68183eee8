"""The experiments: the topology comparison, the compression study and the outer-optimizer study run
end to end in quick mode and give exactly the numbers committed beside their reports."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

import quick_reference

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "experiments" / "compare_topologies.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    # --timeout kills a stuck mpirun job from inside; the outer timeout only guards the script itself.
    # --to: where the committed reference would go; with --quick it gets quick.json and nothing else.
    res = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--timeout", "240", "--out", str(out),
                          "--to", str(out / "to")], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return out, json.loads((out / "results.json").read_text())


def test_quick_comparison_gives_exactly_the_committed_numbers(quick):
    out, _ = quick
    quick_reference.check(out / "quick.json", "docs/topology-comparison/quick.json",
                          "python experiments/compare_topologies.py --quick --to docs/topology-comparison")
    assert sorted(p.name for p in (out / "to").iterdir()) == ["quick.json"]
    assert (out / "to" / "quick.json").read_text() == (out / "quick.json").read_text()


def test_quick_comparison_names_its_commit_and_records_each_job(quick):
    out, results = quick
    meta = results["meta"]
    assert quick_reference.COMMIT.fullmatch(meta["commit"]), meta
    assert meta["date"] and meta["threads"] == 1
    assert f"at commit `{meta['commit']}`, {meta['date']}" in (out / "results.md").read_text()
    for r in results["runs"]:
        job = json.loads((out / "n8" / r["key"] / "job.json").read_text())
        assert job["command"] == r["command"] and job["commit"] == meta["commit"] and job["status"] == 0
        assert not r["kept"], "a fresh directory has nothing to keep"
        assert "OMP_NUM_THREADS=1" in r["command"]


def test_quick_comparison_writes_table_json_and_plots(quick):
    out, _ = quick
    md = (out / "results.md").read_text()
    assert "| n | configuration | final test acc |" in md
    assert re.search(r"mpirun (--allow-run-as-root )?-np 2 ", md), "the exact command lines belong in results.md"
    for name in ("accuracy.png", "consensus.png", "bytes_vs_accuracy.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name


def test_quick_comparison_has_the_expected_runs_with_finite_accuracies(quick):
    _, results = quick
    runs = {(r["n"], r["key"]): r for r in results["runs"]}
    assert set(runs) == {(8, "csgd"), (8, "ring"), (8, "local-h4")}
    for r in runs.values():
        assert r["steps"][-1] == 10
        assert all(math.isfinite(a) and 0 <= a <= 1 for a in r["test_acc"]), r["test_acc"]
        assert r["final_test_acc"] > 0.1, r  # chance is 0.1 and even 10 steps beat it
        assert r["mb_sent_per_worker"] > 0


def test_quick_comparison_numbers_match_what_the_algorithms_imply(quick):
    _, results = quick
    runs = {r["key"]: r for r in results["runs"]}
    assert runs["csgd"]["final_consensus_distance"] == 0  # C-SGD replicas stay identical
    # A ring round sends the model to 2 neighbours; an allreduce counts the model once.
    assert runs["ring"]["mb_sent_per_worker"] == pytest.approx(2 * runs["csgd"]["mb_sent_per_worker"])
    ring_lambda2 = (1 + 2 * math.cos(2 * math.pi / 8)) / 3  # uniform 1/3 weights on an 8-cycle
    assert runs["ring"]["spectral_gap"] == pytest.approx(1 - ring_lambda2)
    assert runs["csgd"]["spectral_gap"] is None and runs["local-h4"]["spectral_gap"] is None
    assert any("torus" in note for note in results["meta"]["notes"]), "n=8 has no torus: say so"


def test_compression_experiment_runs_end_to_end_in_quick_mode(tmp_path):
    script = REPO / "experiments" / "compression.py"
    res = subprocess.run([sys.executable, str(script), "all", "--quick", "--timeout", "240", "--out", str(tmp_path),
                          "--to", str(tmp_path / "to")], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    quick_reference.check(tmp_path / "quick.json", "docs/compression/quick.json",
                          "python experiments/compression.py all --quick --to docs/compression")
    assert sorted(p.name for p in (tmp_path / "to").iterdir()) == ["quick.json"]
    convex = json.loads((tmp_path / "convex.json").read_text())
    assert {"exact gossip (D-SGD)", "CHOCO sign", "CHOCO top-k:ratio=0.01"} <= set(convex["methods"])
    for m in convex["methods"].values():
        assert all(math.isfinite(p[2]) for p in m["points"])
    deep = json.loads((tmp_path / "deep.json").read_text())
    assert {r["method"] for r in deep["runs"]} == {"dsgd", "choco-sign", "choco-top-1%"}
    for r in deep["runs"]:
        job = json.loads((REPO / r["run_dir"] / "job.json").read_text())
        assert job["command"] == r["command"] and job["commit"] == deep["meta"]["commit"]
    md = (tmp_path / "README.md").read_text()
    assert "## Convex" in md and "## Deep" in md and re.search(r"mpirun (--allow-run-as-root )?-np ", md)
    assert md.count(f"at commit `{convex['meta']['commit']}`") == 2, "each section names the commit of its numbers"
    for name in ("convex_bytes.png", "deep_accuracy_vs_mb.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_outer_optimizer_experiment_runs_end_to_end_in_quick_mode(tmp_path):
    """C-SGD, DiLoCo and streaming DiLoCo on the byte-level GPT for 16 steps: the table, the verdicts and
    the three plots, with every communication event rebuilt from the runs' own settings."""
    script = REPO / "experiments" / "outer_optimizers.py"
    res = subprocess.run([sys.executable, str(script), "all", "--quick", "--timeout", "240", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    data = json.loads((tmp_path / "results.json").read_text())
    runs = {r["arm"]: r for r in data["runs"]}
    assert set(runs) == {"C-SGD", "DiLoCo (H=16)", "streaming DiLoCo (F=4, tau=2)"}
    assert len(runs["C-SGD"]["events"]) == 16 and len(runs["DiLoCo (H=16)"]["events"]) == 1
    stream = runs["streaming DiLoCo (F=4, tau=2)"]["events"]
    assert len(stream) == 4 and sum(b for _, _, b in stream) == runs["DiLoCo (H=16)"]["events"][0][2]
    for r in runs.values():
        assert r["val_loss"][-1] < 5.0  # below uniform bytes (ln 256 = 5.55) after 16 steps
        assert r["bytes_sent"][-1] == pytest.approx(sum(b for _, _, b in r["events"]))
    md = (tmp_path / "README.md").read_text()
    assert "| C-SGD | 1 |" in md and "fewer synchronizations" in md and "peak bytes per step were 0." in md
    for name in ("loss_vs_steps.png", "loss_vs_bytes.png", "loss_vs_predicted_time.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC

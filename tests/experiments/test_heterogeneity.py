"""The heterogeneity experiment runs end to end in quick mode and gives exactly the committed numbers."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import quick_reference

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "experiments" / "heterogeneity.py"
COMMAND = "python experiments/heterogeneity.py all --quick --to docs/heterogeneity"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("heterogeneity")
    res = subprocess.run([sys.executable, str(SCRIPT), "all", "--quick", "--timeout", "300", "--out", str(out),
                          "--to", str(out / "to")], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


def test_quick_heterogeneity_gives_exactly_the_committed_numbers(quick):
    quick_reference.check(quick / "quick.json", "docs/heterogeneity/quick.json", COMMAND)
    assert sorted(p.name for p in (quick / "to").iterdir()) == ["quick.json"]


def test_quick_heterogeneity_report_answers_from_its_own_numbers(quick):
    results = json.loads((quick / "results.json").read_text())
    runs = results["runs"]
    assert {r["study"] for r in runs} == {"sweep", "scale"} and all(r["commit"] for r in runs)
    for r in runs:  # every evaluation row carries the heterogeneity metrics, in range
        assert all(0 <= lo <= mean <= 1 for lo, mean in zip(r["local_test_acc_min"], r["local_test_acc_mean"]))
        assert all(z >= 0 for z in r["zeta2"])
        if r["graph"] == "complete":  # an exact average every step: every local model is the average
            assert r["local_test_acc_mean"][-1] == r["local_test_acc_min"][-1] == r["test_acc"][-1]
    a = results["answers"]["a_ring_vs_complete_alpha0.1"]
    ring = [r["final_test_acc"] for r in runs if r["key"] == "sweep/n16/alpha=0.1/dsgd-momentum/ring"]
    assert a["b_mean"] == pytest.approx(sum(ring) / len(ring))
    assert any(s.startswith("(a) Under Dirichlet alpha = 0.1") for s in results["sentences"])
    md = (quick / "results.md").read_text()
    assert "Report produced by `python experiments/heterogeneity.py all --quick" in md
    for png in ("a_topology_under_heterogeneity.png", "b_robust_methods_on_the_ring.png", "accuracy_vs_mb.png",
                "consensus_distance.png", "zeta2.png", "scale.png"):
        assert (quick / png).stat().st_size > 1000, png

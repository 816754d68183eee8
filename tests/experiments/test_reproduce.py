"""experiments/reproduce.py runs one claim end to end in quick mode, writes its report, and gives
exactly the numbers committed in docs/reproductions/quick.json."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import quick_reference

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "experiments" / "reproduce.py"


def test_quick_postlocal_claim_writes_markdown_and_json_with_finite_numbers(tmp_path):
    # --timeout kills a stuck mpirun job from inside; the outer timeout only guards the script itself.
    res = subprocess.run([sys.executable, str(SCRIPT), "postlocal", "--quick", "--timeout", "200",
                          "--out", str(tmp_path), "--to", str(tmp_path / "to")],
                         capture_output=True, text=True, timeout=240, cwd=REPO)
    assert res.returncode == 0, f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    quick_reference.check(tmp_path / "quick.json", "docs/reproductions/quick.json",
                          "python experiments/reproduce.py postlocal --quick --to docs/reproductions")
    assert sorted(p.name for p in (tmp_path / "to").iterdir()) == ["quick.json"]

    result = json.loads((tmp_path / "postlocal.json").read_text())
    assert set(result["stats"]) == {"csgd-step", "postlocal-h8-step"}
    for arm, s in result["stats"].items():
        assert s["seeds"] == [0], arm
        for key in ("mean", "std", "min", "max", "rounds", "mb_sent_per_worker"):
            assert math.isfinite(s[key]), (arm, key, s[key])
        assert 0 <= s["min"] <= s["mean"] <= s["max"] <= 1
    assert quick_reference.COMMIT.fullmatch(result["meta"]["commit"]) and result["meta"]["threads"] == 1
    for r in result["runs"]:
        job = json.loads((tmp_path / r["arm"] / "seed0" / "job.json").read_text())
        assert job["command"] == r["command"] and job["commit"] == r["commit"] == result["meta"]["commit"]
        assert not r["kept"] and "reused" not in r
        assert r["steps"][-1] == 8
        assert r["local_steps"][-1] == (8 if r["arm"] == "postlocal-h8-step" else 1)
    # C-SGD averages every step; post-local SGD averages every step only before the switch at step 4.
    csgd, post = result["stats"]["csgd-step"], result["stats"]["postlocal-h8-step"]
    assert csgd["rounds"] == 8
    assert 4 <= post["rounds"] < csgd["rounds"]
    assert result["verdict"].startswith("INCONCLUSIVE"), "one seed cannot support a verdict"

    md = (tmp_path / "postlocal.md").read_text()
    assert "| arm | seeds | mean test acc | std | min | max |" in md
    assert re.search(r"mpirun (--allow-run-as-root )?-np 2 ", md), "the exact command lines belong in the report"
    assert "## Verdict" in md
    assert f"at commit `{result['meta']['commit']}`, {result['meta']['date']}" in md
    summary = (tmp_path / "README.md").read_text()
    assert "[postlocal](postlocal.md)" in summary and f"`{result['meta']['commit']}`" in summary

"""experiments/reproduce.py runs one claim end to end in quick mode and writes its report."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "experiments" / "reproduce.py"


def test_quick_postlocal_claim_writes_markdown_and_json_with_finite_numbers(tmp_path):
    # --timeout kills a stuck mpirun job from inside; the outer timeout only guards the script itself.
    res = subprocess.run([sys.executable, str(SCRIPT), "postlocal", "--quick", "--timeout", "200",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=240, cwd=REPO)
    assert res.returncode == 0, f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}"

    result = json.loads((tmp_path / "postlocal.json").read_text())
    assert set(result["stats"]) == {"csgd-step", "postlocal-h8-step"}
    for arm, s in result["stats"].items():
        assert s["seeds"] == [0], arm
        for key in ("mean", "std", "min", "max", "rounds", "mb_sent_per_worker"):
            assert math.isfinite(s[key]), (arm, key, s[key])
        assert 0 <= s["min"] <= s["mean"] <= s["max"] <= 1
    for r in result["runs"]:
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
    summary = (tmp_path / "README.md").read_text()
    assert "[postlocal](postlocal.md)" in summary

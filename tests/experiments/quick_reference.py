"""A quick configuration's numbers against the reference committed beside its report: equal, exactly.

The runs are deterministic on one kind of machine (same seeds, one thread per rank), so any
difference means the code now computes something else; if that is intended, the reference is
refreshed with the command it records. Another CPU (other SIMD kernels in torch) rounds in the last
bits differently, so a reference file holds one reference per machine kind; on a kind it has none
for, the numbers must agree with a recorded one to REL_TOLERANCE, and a warning says that exactness
was not checked here.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REL_TOLERANCE = 1e-3
COMMIT = re.compile(r"[0-9a-f]{40}(\+dirty)?")


def first_difference(a, b, where: str = "metrics") -> str | None:
    """Where A (this run) and B (the reference) first differ, in words; None when equal."""
    if a == b:
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in b:
                return f"{where}/{key}: not in the committed reference"
            if key not in a:
                return f"{where}/{key}: in the committed reference, not in this run"
            found = first_difference(a[key], b[key], f"{where}/{key}")
            if found:
                return found
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
    return f"{where}: {a!r} in this run, {b!r} committed"


def close(a, b, rel: float) -> bool:
    """A and B agree to `rel` in every float (exactly elsewhere), with the same structure."""
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(close(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)
    return a == b


def check(fresh: Path, reference: str, command: str) -> None:
    """FRESH (a quick.json just written) holds exactly the numbers of REFERENCE (a path in the
    repository) made by COMMAND at a clean commit on this kind of machine (or, where REFERENCE
    has none for this kind, agrees with one to REL_TOLERANCE)."""
    ours = json.loads(fresh.read_text())
    committed = json.loads((REPO / reference).read_text())
    entries = [{"produced_by": committed["produced_by"], "metrics": committed["metrics"]},
               *committed.get("other_machines", [])]
    for entry in entries:
        origin = entry["produced_by"]
        assert origin["command"] == command, f"{reference} was made by {origin['command']!r}, not {command!r}"
        assert COMMIT.fullmatch(origin["commit"]) and not origin["commit"].endswith("+dirty"), origin
    assert COMMIT.fullmatch(ours["produced_by"]["commit"]), ours["produced_by"]
    here = ours["produced_by"].get("machine")
    same_kind = [e for e in entries if e["produced_by"].get("machine") == here]
    if same_kind:
        origin = same_kind[0]["produced_by"]
        assert ours["metrics"] == same_kind[0]["metrics"], (
            f"the quick configuration no longer gives the committed numbers ({reference}, commit {origin['commit']}, "
            f"{here}): {first_difference(ours['metrics'], same_kind[0]['metrics'])}. If the change is meant, run "
            f"`{command}` and commit the new reference (and rerun the long report)")
        return
    assert any(close(ours["metrics"], e["metrics"], REL_TOLERANCE) for e in entries), (
        f"the quick configuration is not within {REL_TOLERANCE:g} of any committed reference ({reference}): "
        f"{first_difference(ours['metrics'], entries[0]['metrics'])}")
    warnings.warn(f"{reference} has no reference made on this machine kind ({here}); the numbers agree with "
                  f"one made on {entries[0]['produced_by'].get('machine', 'an unrecorded machine')} to "
                  f"{REL_TOLERANCE:g}, not exactly. Add one with `{command}`")

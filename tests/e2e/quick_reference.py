"""A quick configuration's numbers against the reference committed beside its report: equal, exactly.

The runs are deterministic on one machine (same seeds, one thread per rank), so any difference
means the code now computes something else; if that is intended, the reference is refreshed with
the command it records.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
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


def check(fresh: Path, reference: str, command: str) -> None:
    """FRESH (a quick.json just written) holds exactly the numbers of REFERENCE (a path in the
    repository), which COMMAND made at a clean commit."""
    ours = json.loads(fresh.read_text())
    committed = json.loads((REPO / reference).read_text())
    origin = committed["produced_by"]
    assert origin["command"] == command, f"{reference} was made by {origin['command']!r}, not {command!r}"
    assert COMMIT.fullmatch(origin["commit"]) and not origin["commit"].endswith("+dirty"), origin
    assert COMMIT.fullmatch(ours["produced_by"]["commit"]), ours["produced_by"]
    assert ours["metrics"] == committed["metrics"], (
        f"the quick configuration no longer gives the committed numbers ({reference}, commit {origin['commit']}): "
        f"{first_difference(ours['metrics'], committed['metrics'])}. If the change is meant, run `{command}` and "
        f"commit the new reference (and rerun the long report)")

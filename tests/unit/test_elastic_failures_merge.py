"""experiments/elastic_failures.py run --modes M: a rerun of one mode replaces that mode's rows and
keeps the other mode's rows with the provenance of the invocation that made them, and no other."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))

import elastic_failures as ef  # noqa: E402


def meta(command: str, commit: str, **extra) -> dict:
    return {"command": command, "commit": commit, **extra}


def row(mode: str, seed: int) -> dict:
    return {"mode": mode, "seed": seed}


def test_the_modes_of_an_invocation_are_recorded_or_read_from_its_command_line():
    assert ef.meta_modes(meta("python experiments/elastic_failures.py run --out x", "a")) == ["trainer", "replacements"]
    assert ef.meta_modes(meta("python experiments/elastic_failures.py run --modes replacements --out x", "a")) == \
        ["replacements"]
    assert ef.meta_modes(meta("anything", "a", modes=["trainer"])) == ["trainer"]


def test_a_rerun_of_one_mode_keeps_the_other_modes_rows_and_only_their_provenance():
    first = meta("python experiments/elastic_failures.py run --out x", "c1")             # both modes
    second = meta("python experiments/elastic_failures.py run --modes replacements --out x", "c2",
                  earlier=[first])
    saved = {"meta": second, "rows": [row("trainer", 0), row("trainer", 1), row("replacements", 0)]}
    new = meta("python experiments/elastic_failures.py run --modes replacements --out x", "c3",
               modes=["replacements"])
    rows, merged = ef.merge(saved, [row("replacements", 0), row("replacements", 1)], new)
    assert rows == [row("trainer", 0), row("trainer", 1), row("replacements", 0), row("replacements", 1)]
    # the second invocation's rows are all gone: only the first (which made the trainer rows) is cited
    assert [m["commit"] for m in merged["earlier"]] == ["c1"] and merged["commit"] == "c3"


def test_a_rerun_of_every_mode_keeps_nothing_from_before():
    saved = {"meta": meta("python experiments/elastic_failures.py run --out x", "c1"), "rows": [row("trainer", 0)]}
    new = meta("python experiments/elastic_failures.py run --out x", "c2", modes=["trainer", "replacements"])
    rows, merged = ef.merge(saved, [row("trainer", 0)], new)
    assert rows == [row("trainer", 0)] and "earlier" not in merged

"""A run directory holds one run.

A new run into a directory that already holds one would mix two runs' metrics, checkpoints and
logs, so it is refused unless asked for: `--overwrite true` replaces the old run (only the files a
run writes; anything else in the directory stays), `--resume` continues it. A resume appends what
it changed to `resumes.jsonl`; `config.yaml` always holds the settings the next step is trained
with, so a later resume continues with them.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from dsgd.config import ConfigError

CONFIG, METRICS, RESUMES = "config.yaml", "metrics.jsonl", "resumes.jsonl"
FILES = (CONFIG, METRICS, RESUMES, "partition.json", "partition.png")  # what a run writes at the top level


class RunDirError(ConfigError):
    """The run directory holds another run and the command did not say what to do with it."""


def _run_files(out: Path) -> dict[str, list[Path]]:
    """What a run wrote in `out`, by the name shown to the user."""
    found = {name: [out / name] for name in FILES if (out / name).is_file()}
    ck = out / "checkpoints"
    groups = {"checkpoints/": sorted(ck.glob("step-*")) + sorted(ck.glob("latest.json*")),
              "logs/": sorted((out / "logs").glob("rank*.log")),
              "tensorboard/": sorted((out / "tensorboard").glob("events.out.tfevents.*"))}
    found.update({name: paths for name, paths in groups.items() if paths})
    return found


def holds_run(out: Path) -> list[str]:
    """Names of the run files in `out` (empty: no run there)."""
    return list(_run_files(Path(out)))


def clear(out: Path) -> list[str]:
    """Remove the run files in `out` (and the folders they leave empty); returns what was removed."""
    out = Path(out)
    found = _run_files(out)
    for paths in found.values():
        for p in paths:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
    _remove_empty_folders(out)
    return list(found)


class Claim:
    """Make `out` ready for this run before any rank writes there (rank 0, while the others wait).

    resume_dir: the run directory the checkpoint comes from (None: a new run). auto_fresh: `--resume
    auto` found no checkpoint, so the leftovers of a run that never checkpointed are replaced.
    A run being replaced is first moved aside, and only deleted once the new run has started
    (`commit`): a start that fails (a bad setting found later) puts it back (`rollback`).
    """

    ASIDE = ".replaced-run"

    def __init__(self, out: Path, overwrite: bool, resume_dir: str | None, auto_fresh: bool):
        self.out, self.note, self.moved = Path(out), None, []
        found = _run_files(self.out)
        if not found:
            return
        files = ", ".join(found)
        if resume_dir is not None:
            if Path(resume_dir).resolve() == self.out.resolve():
                return  # continuing the run that is there
            raise RunDirError(f"{out} already holds another run ({files}): give an empty --out to continue "
                              f"{resume_dir} in, or leave --out out to continue it in place")
        if not (overwrite or auto_fresh):
            raise RunDirError(f"{out} already holds a run ({files}): continue it with --resume {out}, replace "
                              f"it with --overwrite true, or give another --out")
        aside = self.out / self.ASIDE
        shutil.rmtree(aside, ignore_errors=True)  # left by a start that was killed before it committed
        try:
            for paths in found.values():
                for p in paths:
                    dest = aside / p.relative_to(self.out)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    p.rename(dest)
                    self.moved.append(p)
        except OSError:
            self._put_back()  # leave the old run whole
            raise
        _remove_empty_folders(self.out)
        why = "--overwrite true" if overwrite else "--resume auto found no checkpoint"
        self.note = f"{why}: replaced the earlier run in {out} ({files})"

    def commit(self) -> None:
        """The new run has started: the old one goes for good."""
        shutil.rmtree(self.out / self.ASIDE, ignore_errors=True)

    def rollback(self) -> None:
        """The new run did not start: remove what it wrote, put the old run back."""
        if self.moved:
            clear(self.out)
            self._put_back()

    def _put_back(self) -> None:
        for p in self.moved:
            p.parent.mkdir(parents=True, exist_ok=True)
            (self.out / self.ASIDE / p.relative_to(self.out)).rename(p)
        shutil.rmtree(self.out / self.ASIDE, ignore_errors=True)
        self.moved, self.note = [], None


def _remove_empty_folders(out: Path) -> None:
    for sub in ("checkpoints", "logs", "tensorboard"):
        try:
            (out / sub).rmdir()
        except OSError:  # absent, or holds files a run did not write
            pass


def _flat(settings: dict) -> dict:
    return {k: v for section in settings.values() for k, v in section.items()}


def changes(before: dict, after: dict) -> dict:
    """{setting: [old, new]} for every setting that differs between two `Config.as_dict()`s."""
    old, new = _flat(before), _flat(after)
    same_place = Path(str(old.get("out"))).resolve() == Path(str(new.get("out"))).resolve()
    return {k: [old.get(k), v] for k, v in new.items() if old.get(k) != v and not (k == "out" and same_place)}


def resume_record(step: int, before: dict, after: dict, ranks: tuple[int, int], workers_per_rank: int,
                  checkpoint: str) -> dict:
    """One row of resumes.jsonl. ranks: (the checkpoint's, this run's)."""
    changed = changes(before, after)
    if ranks[0] != ranks[1]:
        changed["ranks"] = list(ranks)
    return {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "checkpoint": checkpoint,
            "ranks": ranks[1], "workers_per_rank": workers_per_rank, "changed": changed}


def write_settings(out: Path, settings: dict, record: dict | None) -> None:
    """config.yaml <- the settings trained with from now on; a resume also appends its record."""
    out = Path(out)
    (out / CONFIG).write_text(yaml.safe_dump(settings, sort_keys=False))
    if record is not None:
        with open(out / RESUMES, "a") as f:
            f.write(json.dumps(record) + "\n")

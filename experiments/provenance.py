"""Where a report's numbers come from, and when a run directory may stand in for a new run.

Every report names the commit it was produced from (`git rev-parse HEAD`, with "+dirty" when
tracked files differ from it) and the date. A job's run directory gets a `job.json` after the job
succeeds: its exact command (what ran, from the repository root), that commit, the exit status,
the wall time and the date. A later job keeps that directory only when it would run the very same
command at the very same clean commit; anything else (another command, another commit, a dirty
tree, no record) trains again from an empty directory.

Paths in commands and reports are relative to the repository when they lie inside it, so a line
from a report runs as printed from the repository root, wherever the checkout is.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from dsgd import launcher  # noqa: E402


def commit() -> str:
    """HEAD, with "+dirty" when tracked files differ from it (runs of a dirty tree are never kept)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown+dirty"
    return head + ("+dirty" if dirty else "")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def rel(path: str | Path) -> str:
    """PATH relative to the repository when it lies inside it, else absolute."""
    p = Path(path).absolute()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


def python() -> str:
    """The interpreter the jobs run, as a report shows it (relative when it is the repository's venv)."""
    return rel(sys.executable)


def script_command(script: str, argv: Sequence[str]) -> str:
    """How the script was invoked, as one line to run from the repository root."""
    return shlex.join(["python", f"experiments/{script}", *argv])


def produced_by(command: str, code: str | None = None) -> dict:
    """What a report names as its origin: the command, the commit, the date."""
    return {"command": command, "commit": commit() if code is None else code, "date": now()}


def machine() -> dict:
    """What timings depend on: host, CPUs, versions, and how busy the machine was."""
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "?"
    return {"host": platform.node(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch_version,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def provenance_line(meta: dict) -> str:
    """One sentence for a report: the command, the commit and the date of its numbers."""
    code = meta.get("commit")
    where = f"at commit `{code}`" if code else "at a commit it did not record"
    return f"Produced by `{meta['command']}` {where}, {meta['date']}"


def kept_job(run_dir: Path, command: str, code: str) -> dict | None:
    """The job.json of RUN_DIR when it ran COMMAND at the clean commit CODE and succeeded, else None."""
    record = run_dir / "job.json"
    if code.endswith("+dirty") or not record.is_file():
        return None
    try:
        job = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if job.get("command") == command and job.get("commit") == code and job.get("status") == 0:
        return job
    return None


def run_job(line: Sequence[str], run_dir: Path, code: str, timeout: float, name: str, what: str) -> tuple[dict, bool]:
    """Run the mpirun LINE from the repository root into RUN_DIR, or keep RUN_DIR if it already holds
    the same command at the same clean commit. (job record, kept). A failed job ends the script
    with its output; NAME is the script, WHAT the job, both for messages."""
    shown = shlex.join(line)
    job = kept_job(run_dir, shown, code)
    if job is not None:
        print(f"== {what}: same command at the same commit already ran, kept {rel(run_dir)}", flush=True)
        return job, True
    print(f"== {what}: {shown}", flush=True)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the trainer appends to metrics.jsonl; a new run starts from nothing
    t0 = time.time()
    try:
        res = launcher.execute(line, timeout=timeout, capture=True, cwd=REPO)
    except TimeoutError:
        sys.exit(f"{name}: {what} did not finish in {timeout:g} s (raise --timeout for longer jobs)")
    if res.returncode != 0:
        sys.exit(f"{name}: {what} failed with status {res.returncode}:\n{res.stdout[-4000:]}")
    job = {"command": shown, "commit": code, "status": res.returncode, "job_wall_s": time.time() - t0, "date": now()}
    (run_dir / "job.json").write_text(json.dumps(job, indent=1))
    return job, False


def float_machine() -> str:
    """What decides the rounding of a run: the CPU model and the SIMD kernels torch picks for it.

    The same code and seeds give the same floats on one such machine kind, and may differ in the
    last bits on another (other kernels, another reduction order), so references are kept per kind.
    """
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:
        capability = "?"
    return f"{model}; torch {capability}"


def write_reference(path: Path, meta: dict, metrics: dict) -> None:
    """A quick configuration's numbers, for CI to compare a rerun against exactly.

    The file holds one reference per machine kind (`float_machine`): this one's in `produced_by` and
    `metrics`, earlier ones of the same command made on other kinds under `other_machines`."""
    meta = {**meta, "machine": float_machine()}
    others = []
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
        for entry in [{"produced_by": old.get("produced_by"), "metrics": old.get("metrics")},
                      *old.get("other_machines", [])]:
            origin = entry.get("produced_by") or {}
            if (entry.get("metrics") is not None and origin.get("command") == meta["command"]
                    and origin.get("machine") != meta["machine"]):
                others.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"produced_by": meta, "metrics": metrics}
    if others:
        doc["other_machines"] = others
    path.write_text(json.dumps(doc, indent=1) + "\n")

"""What the lab tells after a job: the kernel's bytes per host beside dsgd's own count, and dsgd's
time per step split into compute and communication.

dsgd's side comes from the run directory's metrics.jsonl (written by rank 0 at each evaluation):
its last row holds the bytes each worker sent so far (`bytes_sent`, a mean over workers) and the
seconds each rank spent computing and communicating (`compute_s`, `comm_s`, means over ranks).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from dsgd.lab.network import SUBNET, Layout
from dsgd.lab.spec import format_rate

MB = 1e6


@dataclass(frozen=True)
class DsgdRun:
    """The totals of one dsgd run, from its last metrics row and its config."""

    path: str
    steps: int
    workers_per_rank: int
    bytes_sent_per_worker: float
    wall_s: float
    compute_s: float
    comm_s: float


def run_dir_of(command: Sequence[str]) -> Optional[Path]:
    """The --out of a `dsgd.train` command (its default, runs/latest, when not given); None otherwise."""
    words = list(command)
    for i, word in enumerate(words):
        if word == "--out" and i + 1 < len(words):
            return Path(words[i + 1])
        if word.startswith("--out="):
            return Path(word[len("--out="):])
    return Path("runs/latest") if "dsgd.train" in words else None


def read_run(path: Path, since: float) -> Optional[DsgdRun]:
    """The run in PATH when its metrics were written after SINCE (a Unix time), else None: an older
    run left in the same directory must not be read as this job's."""
    metrics = path / "metrics.jsonl"
    if not metrics.is_file() or metrics.stat().st_mtime < since:
        return None
    last = None
    for line in metrics.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue          # a line torn by a crash
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            last = row
    if last is None:
        return None
    config = path / "config.yaml"
    found = re.search(r"^\s*workers_per_rank:\s*(\d+)", config.read_text() if config.is_file() else "", re.M)
    return DsgdRun(str(path), last["step"], int(found.group(1)) if found else 1, float(last["bytes_sent"]),
                   float(last["wall_s"]), float(last["compute_s"]), float(last["comm_s"]))


def build(layout: Layout, moved: Dict[str, Tuple[int, int]], status: int, wall_s: float,
          line: Sequence[str], run: Optional[DsgdRun]) -> dict:
    """The report as one JSON-ready dict."""
    spec = layout.spec
    per_host = None if run is None else run.bytes_sent_per_worker * run.workers_per_rank * spec.ranks_per_host
    # With one rank per host every byte dsgd sends leaves the host; with more, those between ranks
    # of one host stay in shared memory, so the link's share of dsgd's bytes is not known.
    floor_rate = spec.rate if spec.ranks_per_host == 1 else None
    hosts = [{"host": h.name, "namespace": h.namespace, "address": h.address, "rack": h.group,
              "ranks": spec.ranks_per_host, "sent_bytes": moved[h.name][0], "received_bytes": moved[h.name][1],
              "dsgd_sent_bytes": per_host} for h in layout.hosts]
    uplinks = [{"rack": p.label, "out_bytes": moved[p.label][0], "in_bytes": moved[p.label][1]}
               for p in layout.uplinks()]
    return {"lab": {"hosts": spec.hosts, "ranks_per_host": spec.ranks_per_host, "rate_bits_per_s": spec.rate,
                    "group_size": spec.group_size, "group_rate_bits_per_s": spec.group_rate, "subnet": SUBNET},
            "command": list(spec.command), "job_line": list(line),
            "job": {"status": status, "wall_s": wall_s},
            "hosts": hosts, "uplinks": uplinks, "dsgd": None if run is None else _per_step(run, per_host, floor_rate)}


def _per_step(run: DsgdRun, per_host: float, rate: Optional[int]) -> dict:
    steps = max(run.steps, 1)
    summary = {**asdict(run), "wall_s_per_step": run.wall_s / steps, "compute_s_per_step": run.compute_s / steps,
               "comm_s_per_step": run.comm_s / steps,
               "other_s_per_step": (run.wall_s - run.compute_s - run.comm_s) / steps}
    # The least time a host's link needs for one step's bytes at RATE (None: not known).
    summary["link_s_per_step"] = per_host * 8 / rate / steps if rate else None
    return summary


def table(report: dict, prog: str = "dsgd-lab") -> str:
    """The report for a terminal: a header line, one row per host, racks, dsgd's time per step."""
    lab, job = report["lab"], report["job"]
    ranks = "rank" if lab["ranks_per_host"] == 1 else "ranks"
    head = f"{prog}: {lab['hosts']} hosts x {lab['ranks_per_host']} {ranks}, " \
           f"{format_rate(lab['rate_bits_per_s'])} per host"
    if lab["group_size"]:
        head += f", racks of {lab['group_size']} joined at {format_rate(lab['group_rate_bits_per_s'])}"
    lines = [head + f"; job {job['wall_s']:.1f} s, exit status {job['status']}"]
    rows = [("host", "address", "rack", "ranks", "sent MB", "received MB", "dsgd sent MB", "kernel/dsgd")]
    for h in report["hosts"]:
        dsgd = h["dsgd_sent_bytes"]
        rows.append((h["host"], h["address"], str(h["rack"]), str(h["ranks"]), f"{h['sent_bytes'] / MB:.3f}",
                     f"{h['received_bytes'] / MB:.3f}", "-" if dsgd is None else f"{dsgd / MB:.3f}",
                     "-" if not dsgd else f"{h['sent_bytes'] / dsgd:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    for u in report["uplinks"]:
        lines.append(f"{u['rack']} uplink: {u['out_bytes'] / MB:.3f} MB out of the rack, "
                     f"{u['in_bytes'] / MB:.3f} MB into it")
    lines.append(_dsgd_line(report["dsgd"]))
    return "\n".join(lines)


def _dsgd_line(d: Optional[dict]) -> str:
    if d is None:
        return "dsgd: no metrics.jsonl written by this job (no dsgd.train run directory to read)"
    ms = {k: 1000 * d[f"{k}_s_per_step"] for k in ("wall", "compute", "comm", "other")}
    line = (f"dsgd per step ({d['path']}, {d['steps']} steps): wall {ms['wall']:.1f} ms = compute "
            f"{ms['compute']:.1f} + comm {ms['comm']:.1f} + other {ms['other']:.1f} ms; "
            f"{d['bytes_sent_per_worker'] / max(d['steps'], 1) / MB:.3f} MB sent per worker per step")
    if d["link_s_per_step"] is not None:
        line += f" (the host link's floor for them: {1000 * d['link_s_per_step']:.1f} ms)"
    return line


def write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")

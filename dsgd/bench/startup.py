"""`python -m dsgd.bench startup`: how long a user waits before training starts.

    python -m dsgd.bench startup [--baseline DIR] [--repeats N] [--json]

Times, as whole commands (a driver, not under mpirun):
  help   `python -m dsgd.train --help`
  train  a one-rank job of one step (the default CNN, 200 test images), on the mpirun line the
         checkout's own launcher gives (`python -m dsgd.launcher --dry-run -np 1 --threads 1`)
With --baseline DIR (another checkout of dsgd, e.g. a `git worktree` of an older commit), each
command also runs with that checkout first on PYTHONPATH; the two are interleaved repeat by repeat,
so a busy machine slows both alike, and the report gives their ratio (medians).
"""
from __future__ import annotations

import argparse
import json
import shlex
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dsgd import launcher

REPO = launcher.REPO
ONE_STEP = ["--steps-per-epoch", "1", "--epochs", "1", "--eval-every", "1", "--eval-samples", "200",
            "--bn-batches", "1", "--log-every", "1000"]


def commands(python: str, out: Path, checkout: Path) -> dict:
    """name -> argv of each timed command, with CHECKOUT's own launcher line for the job."""
    train = [python, "-m", "dsgd.train", *ONE_STEP, "--overwrite", "true", "--out", str(out)]
    res = subprocess.run([python, "-m", "dsgd.launcher", "--dry-run", "-np", "1", "--threads", "1", "--", *train],
                         env={**os.environ, **checkout_env(checkout)}, cwd=checkout, capture_output=True, text=True,
                         timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"the launcher of {checkout} gave no line: {res.stdout + res.stderr}")
    return {"help": [python, "-m", "dsgd.train", "--help"], "train": shlex.split(res.stdout.strip())}


def time_once(argv: list, env: dict, cwd: Path) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(argv, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed with {res.returncode}:\n{(res.stdout + res.stderr)[-2000:]}")
    return took


def checkout_env(checkout: Path) -> dict:
    """Run with CHECKOUT's dsgd and topologies ahead of the installed ones (ranks inherit PYTHONPATH)."""
    return {"PYTHONPATH": str(checkout) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def summarize(times: dict) -> dict:
    """times[checkout][command] -> list of seconds; medians, spreads and, with a baseline, ratios."""
    report = {}
    for checkout, per_command in times.items():
        report[checkout] = {name: {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts),
                                   "repeats": len(ts)} for name, ts in per_command.items()}
    if "baseline" in report:
        report["ratio_baseline_over_current"] = {
            name: report["baseline"][name]["median_s"] / report["current"][name]["median_s"]
            for name in report["current"] if name in report["baseline"]}
    return report


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m dsgd.bench startup", description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, help="another dsgd checkout to time side by side")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each command and checkout (default 5)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.baseline is not None and not (args.baseline / "dsgd" / "train" / "cli.py").is_file():
        p.error(f"--baseline {args.baseline} is not a dsgd checkout (no dsgd/train/cli.py)")
    checkouts = {"current": REPO}
    if args.baseline is not None:
        checkouts["baseline"] = args.baseline.resolve()
    times: dict = {name: {} for name in checkouts}
    with tempfile.TemporaryDirectory(prefix="dsgd-startup-") as tmp:
        lines = {name: commands(sys.executable, Path(tmp) / name, checkout) for name, checkout in checkouts.items()}
        for repeat in range(args.repeats + 1):      # repeat 0 warms the file cache and is not counted
            for name, checkout in checkouts.items():
                for command, line in lines[name].items():
                    took = time_once(line, checkout_env(checkout), checkout)
                    if repeat:
                        times[name].setdefault(command, []).append(took)
    report = {"benchmark": "startup", "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or
              platform.machine(), "cores": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
              "lines": {name: {c: shlex.join(line).replace(tmp, "TMP").replace(sys.executable, "python")
                               for c, line in per.items()} for name, per in lines.items()},
              **summarize(times)}
    if args.json:
        print(json.dumps(report))
    else:
        for checkout in checkouts:
            for command, t in report[checkout].items():
                print(f"{checkout:8s} {command:12s} median {t['median_s']:.3f} s  (min {t['min_s']:.3f}, "
                      f"max {t['max_s']:.3f}, {t['repeats']} runs)")
        for command, r in report.get("ratio_baseline_over_current", {}).items():
            print(f"baseline / current  {command:12s} {r:.2f}x")
    return 0

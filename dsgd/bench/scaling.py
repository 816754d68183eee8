"""Weak scaling: short trainings on 1, 2, 4, 8 ranks, D-SGD on a ring and C-SGD, each its own mpirun job.

    python -m dsgd.bench scaling --json          (not under mpirun: it launches the jobs itself)
    python -m dsgd.bench scaling --ranks 1 2 4 8 16 --steps 100

Each job is `python -m dsgd.train` through dsgd.launcher (one torch thread per rank; ranks
yield the core while they wait when they outnumber the cores) for two epochs of --steps steps, evaluating at the end of
each on 500 test samples. The local batch is fixed, so N ranks do N times the work of one.

Throughput is read from the second epoch alone, between the two rows of metrics.jsonl:
    samples_per_s = steps x batch x ranks / (wall_s(2 S) - wall_s(S))
so start-up, the first checkpoint and warmup are outside it; the window holds S training
steps and one evaluation. compute_s and comm_s are the same window's seconds per rank
(averaged over ranks) inside compute_grads + optimizer_step and inside communication; the
training step's own throughput, without data loading, evaluation and bookkeeping, is
    step_samples_per_s = steps x batch x ranks / (compute_s + comm_s)
Weak-scaling efficiency(N) = samples_per_s(N) / (N x samples_per_s(1)), per algorithm, and
step_efficiency the same with step_samples_per_s.
A ring needs 3 nodes: with 1 or 2 ranks D-SGD runs on the complete graph (on 2 nodes the
only connected graph; on 1 node, no communication).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from dsgd import launcher
from dsgd.bench.common import load_average, now, positive, report_main

DEFAULT_RANKS = (1, 2, 4, 8)
ALGORITHMS = ("dsgd", "csgd")
NOTES = [
    "samples_per_s = steps x batch x ranks / window_s, window_s = wall_s(2 S) - wall_s(S) from metrics.jsonl "
    "(S training steps plus one evaluation on 500 test samples)",
    "compute_s, comm_s: seconds per rank inside the window (mean over ranks); other_s = window_s - compute_s - "
    "comm_s (data, bookkeeping, evaluation, waiting for the CPU)",
    "step_samples_per_s = steps x batch x ranks / (compute_s + comm_s): the training step alone",
    "efficiency = samples_per_s(N) / (N x samples_per_s(1)) for the same algorithm; step_efficiency likewise "
    "from step_samples_per_s",
    "load_average_before: the 1-minute load average as the job starts (it includes the tail of the job before)",
]


def topology_for(algorithm: str, topology: str, ranks: int) -> str | None:
    if algorithm != "dsgd":
        return None
    return topology if ranks >= 3 else "complete"


def train_args(args, algorithm: str, ranks: int, out: Path) -> list[str]:
    flags = ["-m", "dsgd.train", "--algorithm", algorithm, "--model", args.model, "--norm", "none",
             "--dataset", args.dataset, "--batch-size", str(args.batch_size), "--lr", "0.05", "--momentum", "0.9",
             "--steps-per-epoch", str(args.steps), "--epochs", "2", "--eval-every", str(args.steps),
             "--eval-samples", "500", "--log-every", "1000000", "--threads", "1", "--out", str(out),
             "--overwrite", "true"]  # a rerun into the same --out measures afresh
    topo = topology_for(algorithm, args.topology, ranks)
    return flags + (["--topology", topo] if topo else [])


def read_window(out: Path, steps: int) -> dict:
    """Seconds of the second epoch (training + its evaluation) and its compute and communication parts."""
    rows = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r}
    first, second = rows[steps], rows[2 * steps]
    return {key: second[key] - first[key] for key in ("wall_s", "compute_s", "comm_s")}


def jobs(ranks: list[int], algorithms: list[str]) -> list[tuple[str, int]]:
    """(algorithm, ranks) in the order they run: the algorithms alternate at each size, so both see
    about the same load from other processes."""
    return [(algorithm, n) for n in ranks for algorithm in algorithms]


def window_row(args, algorithm: str, ranks: int, w: dict, load: float) -> dict:
    """One job's result from its second-epoch window w (read_window) and the load as it started."""
    return {"algorithm": algorithm, "topology": topology_for(algorithm, args.topology, ranks), "ranks": ranks,
            "samples_per_s": args.steps * args.batch_size * ranks / w["wall_s"],
            "step_samples_per_s": args.steps * args.batch_size * ranks / (w["compute_s"] + w["comm_s"]),
            "window_s": w["wall_s"],
            "compute_s": w["compute_s"], "comm_s": w["comm_s"],
            "other_s": w["wall_s"] - w["compute_s"] - w["comm_s"], "load_average_before": load}


def measure(args, algorithm: str, ranks: int, root: Path) -> dict:
    out = root / f"{algorithm}-{ranks}"
    load = load_average()
    res = launcher.run(ranks, train_args(args, algorithm, ranks, out), timeout=args.timeout, threads=1)
    if res.returncode != 0:
        raise RuntimeError(f"{algorithm} on {ranks} ranks failed with status {res.returncode}:\n"
                           f"{(res.stdout or '')[-3000:]}")
    return window_row(args, algorithm, ranks, read_window(out, args.steps), load)


def add_efficiency(results: list[dict]) -> None:
    for rate, name in (("samples_per_s", "efficiency"), ("step_samples_per_s", "step_efficiency")):
        single = {r["algorithm"]: r[rate] for r in results if r["ranks"] == 1}
        for r in results:
            base = single.get(r["algorithm"])
            r[name] = r[rate] / (r["ranks"] * base) if base else None


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dsgd.bench scaling", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--ranks", type=positive, nargs="+", metavar="N",
                    help=f"world sizes (default {' '.join(map(str, DEFAULT_RANKS))})")
    ap.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS))
    ap.add_argument("--topology", default="ring", help="D-SGD graph from 3 ranks on")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--batch-size", type=positive, default=32, help="local batch per rank")
    ap.add_argument("--steps", type=positive, default=200,
                    help="steps per epoch S; two epochs are run (at most 60000 / (ranks x batch) on Fashion-MNIST)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before a job is killed")
    ap.add_argument("--out", default=None, help="keep the runs here (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    args.ranks = args.ranks or list(DEFAULT_RANKS)
    return args


def run(args: argparse.Namespace) -> dict:
    started, load = now(), load_average()  # as the measurement starts
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="dsgd-scaling-") as tmp:
        root = Path(args.out or tmp)
        results = [measure(args, algorithm, n, root) for algorithm, n in jobs(args.ranks, args.algorithms)]
    add_efficiency(results)
    notes = list(NOTES)
    if max(args.ranks) > cores:
        notes.append(f"this machine has {cores} cores: above {cores} ranks they share the cores, so efficiency "
                     f"there mostly shows CPU sharing, not communication cost")
    return {"benchmark": "scaling", "device": "cpu", "cores": cores, "model": args.model, "dataset": args.dataset,
            "batch_size": args.batch_size, "steps": args.steps, "torch_threads_per_rank": 1, "date": started,
            "load_average": load, "results": results, "notes": notes}


def table(report: dict) -> str:
    lines = [f"scaling: {report['model']}, batch {report['batch_size']}/rank, {report['steps']} steps per window, "
             f"{report['cores']} cores, {report['date']}",
             f"{'algorithm':<10}{'topology':<10}{'ranks':>6}{'samples/s':>11}{'eff':>6}{'step s/s':>10}"
             f"{'step eff':>9}{'window s':>10}{'compute s':>10}{'comm s':>8}"]
    for r in report["results"]:
        eff, step_eff = ("-" if v is None else f"{v:.2f}" for v in (r["efficiency"], r["step_efficiency"]))
        lines.append(f"{r['algorithm']:<10}{r['topology'] or '-':<10}{r['ranks']:>6}{r['samples_per_s']:>11.0f}"
                     f"{eff:>6}{r['step_samples_per_s']:>10.0f}{step_eff:>9}{r['window_s']:>10.2f}"
                     f"{r['compute_s']:>10.2f}{r['comm_s']:>8.2f}")
    return "\n".join(lines + report["notes"][len(NOTES):])


def main(argv: list[str] | None = None) -> int:
    return report_main(argv, parse_args, run, table)


if __name__ == "__main__":
    sys.exit(main())

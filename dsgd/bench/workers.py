"""Training throughput of K workers in one process: serial (WorkerSet) against vectorized (VectorizedWorkerSet).

    python -m dsgd.bench workers --json
    python -m dsgd.bench workers --model resnet20 --device cuda --dataset synthetic --json

A step is what the trainer does for a rank's K workers between two mixing steps:
compute_grads (forward and backward of every worker on its own local batch) then
optimizer_step. For each K both modes are built from the same initial model and take turns,
serial then vectorized, repetition after repetition, so drifting load hits both alike; the
reported step time is the median over repetitions after warmup. Batches are drawn once with
the trainer's data path (local_batch) onto the device and cycled, so the figures are compute,
not data loading.
"""
from __future__ import annotations

import argparse
import gc
import sys

import torch

from dsgd.bench.common import (PeakMemory, load_average, median, non_negative, now, positive, report_main,
                               set_threads, timed)
from dsgd.config import OptimConfig
from dsgd.data import load_dataset, local_batch, make_sampler
from dsgd.models import MODELS, build_model
from dsgd.train.vectorized import VectorizedWorkerSet, choose
from dsgd.train.workers import WorkerSet

DEFAULT_K = (1, 4, 16, 64)
MODES = ("serial", "vectorized")
DISTINCT_STEPS = 4  # batches drawn per worker, then reused in turn
NOTES = [
    "step_s: seconds of one step of all K workers (compute_grads + optimizer_step), median over repetitions",
    "samples_per_s = K x local batch / step_s, summed over the K workers",
    "peak_mem_mb: peak memory while building the workers and running the warmup steps, above the level "
    "before building them (CPU: resident-set high-water mark, approximate; GPU: tensor memory, exact)",
    "auto_choice: the mode `--vectorize auto` picks for this device and K (dsgd.train.vectorized.choose); "
    "fastest: the mode measured faster here",
    "repeats: --repeats, or fewer (but at least 3) where a step is so slow that --budget-s would be exceeded",
]


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("dsgd.bench workers: error: --device cuda, but torch sees no GPU")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name, torch.cuda.current_device()) if name == "cuda" else torch.device("cpu")


def draw_batches(dataset, K: int, B: int, device: torch.device) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """batches[step][worker], DISTINCT_STEPS steps, already on the device."""
    sampler = make_sampler(True, len(dataset), K, B, seed=0)  # with replacement: any K x B fits
    return [[local_batch(dataset, sampler, w, t, 0, device=device) for w in range(K)] for t in range(DISTINCT_STEPS)]


def build(mode: str, model, K: int, device, probe):
    optim = OptimConfig(momentum=0.9)
    if mode == "serial":
        return WorkerSet(model, K, 0, optim, device)
    return VectorizedWorkerSet(model, K, 0, optim, device, probe=probe)


def train_step(ws, batches) -> None:
    ws.compute_grads(lambda w: batches[w])
    ws.optimizer_step()


def prime(model, args, device, dataset) -> None:
    """One step of each mode on one worker, discarded: the first step's one-time allocations
    (kernel caches, allocator pools) would otherwise be charged to the first K measured."""
    batches = draw_batches(dataset, 1, args.batch_size, device)
    for mode in MODES:
        try:
            train_step(build(mode, model, 1, device, probe=batches[0][0]), batches[0])
        except Exception:  # measure() reports a mode that cannot be built
            pass


def within_budget(repeats: int, budget_s: float, per_rep: float) -> int:
    """--repeats, or fewer (at least 3) when a repetition of every mode (per_rep seconds, the fastest
    warmup step) would take the timed part past budget_s; unknown per_rep (no warmup): --repeats."""
    return repeats if per_rep <= 0 else min(repeats, max(3, int(budget_s / per_rep)))


def mode_result(K: int, mode: str, step_s: list[float], batch_size: int, peak_mem_mb: float, repeats: int) -> dict:
    """One (K, mode) result from its timed steps: median step time, and the K workers' samples per second."""
    s = median(step_s)
    return {"K": K, "mode": mode, "samples_per_s": K * batch_size / s, "step_s": s,
            "peak_mem_mb": peak_mem_mb, "repeats": repeats}


def compare_modes(results: list[dict]) -> tuple[str | None, float | None]:
    """(the faster mode, serial / vectorized step time) among one K's results; None where a mode is missing."""
    by_mode = {r["mode"]: r["step_s"] for r in results}
    fastest = min(by_mode, key=by_mode.get) if by_mode else None
    speedup = by_mode["serial"] / by_mode["vectorized"] if len(by_mode) == 2 else None  # > 1: vectorized faster
    return fastest, speedup


def measure(model, K: int, args, device, dataset) -> tuple[list[dict], list[dict]]:
    """Results for both modes at one K, and the modes that could not be built."""
    batches = draw_batches(dataset, K, args.batch_size, device)
    memory = PeakMemory(device)
    sets, peak, warm_s, skipped = {}, {}, {}, []
    for mode in MODES:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        memory.start()
        try:
            ws = build(mode, model, K, device, probe=batches[0][0])
        except Exception as e:  # vmap cannot batch this model
            skipped.append({"K": K, "mode": mode, "reason": f"{type(e).__name__}: {e}"})
            continue
        times = [timed(lambda: train_step(ws, batches[t % DISTINCT_STEPS]), device) for t in range(args.warmup)]
        peak[mode] = memory.read_mb()
        sets[mode], warm_s[mode] = ws, (min(times) if times else 0.0)
    # a repetition runs every mode once; keep the timed part within the budget
    repeats = within_budget(args.repeats, args.budget_s, sum(warm_s.values()))
    step_s = {mode: [] for mode in sets}
    for r in range(repeats):
        for mode, ws in sets.items():
            step_s[mode].append(timed(lambda: train_step(ws, batches[(args.warmup + r) % DISTINCT_STEPS]), device))
    results = [mode_result(K, mode, step_s[mode], args.batch_size, peak[mode], repeats) for mode in sets]
    return results, skipped


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dsgd.bench workers", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), default="cnn")
    ap.add_argument("--norm", choices=("bn", "gn", "none"), default="bn")
    ap.add_argument("--dataset", choices=("fashion-mnist", "cifar10", "synthetic"), default="fashion-mnist",
                    help="where batches come from (synthetic: 3 x 32 x 32, CIFAR-10's shape)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    ap.add_argument("--workers", type=positive, nargs="+", metavar="K",
                    help=f"workers per process to measure (default {' '.join(map(str, DEFAULT_K))})")
    ap.add_argument("--batch-size", type=positive, default=32, help="local batch per worker")
    ap.add_argument("--repeats", type=positive, default=10, help="timed repetitions of each mode (at most)")
    ap.add_argument("--warmup", type=non_negative, default=2, help="untimed steps first")
    ap.add_argument("--budget-s", type=float, default=60.0, help="timed seconds per K beyond which repeats shrink")
    ap.add_argument("--threads", type=non_negative, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    args.workers = args.workers or list(DEFAULT_K)
    return args


def run(args: argparse.Namespace) -> dict:
    set_threads(args.threads)
    device = pick_device(args.device)
    dataset = load_dataset(args.dataset, args.data_dir, train=True)
    torch.manual_seed(0)
    model = build_model(args.model, dataset.in_channels, dataset.num_classes, dataset.image_size, norm=args.norm)
    report = {"benchmark": "workers", "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "model": args.model, "norm": args.norm, "dataset": args.dataset, "batch_size": args.batch_size,
              "torch_threads": torch.get_num_threads(), "warmup": args.warmup, "date": now(),
              "load_average": load_average(), "memory_method": PeakMemory(device).method,
              "results": [], "skipped": [], "auto_choice": {}, "fastest": {}, "speedup": {}, "notes": list(NOTES)}
    prime(model, args, device, dataset)
    for K in args.workers:
        results, skipped = measure(model, K, args, device, dataset)
        report["results"] += results
        report["skipped"] += skipped
        report["auto_choice"][str(K)] = "vectorized" if choose("auto", device, K) else "serial"
        fastest, speedup = compare_modes(results)
        if fastest is not None:
            report["fastest"][str(K)] = fastest
        if speedup is not None:
            report["speedup"][str(K)] = speedup
    return report


def table(report: dict) -> str:
    lines = [f"workers: {report['model']} (norm {report['norm']}) on {report['device_name']}, local batch "
             f"{report['batch_size']}, {report['torch_threads']} torch threads, {report['date']}, "
             f"load {report['load_average']:.1f}",
             f"{'K':>4}  {'mode':<11}{'samples/s':>11}{'ms/step':>10}{'peak MB':>9}{'reps':>6}"]
    for r in report["results"]:
        lines.append(f"{r['K']:>4}  {r['mode']:<11}{r['samples_per_s']:>11.0f}{r['step_s'] * 1e3:>10.1f}"
                     f"{r['peak_mem_mb']:>9.1f}{r['repeats']:>6}")
    lines += [f"skipped K={s['K']} {s['mode']}: {s['reason']}" for s in report["skipped"]]
    for key in ("speedup", "auto_choice", "fastest"):
        values = report[key]
        shown = {k: f"{v:.2f}x" if key == "speedup" else v for k, v in values.items()}
        lines.append(f"{key}: " + ", ".join(f"K={k} {v}" for k, v in shown.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return report_main(argv, parse_args, run, table)


if __name__ == "__main__":
    sys.exit(main())

"""Compressed gossip: bits against accuracy, on a convex problem and on the CNN (CHOCO-SGD vs exact gossip).

    python experiments/compression.py convex [--out runs/compression] [--to DIR]   # in-process, ~4 min
    python experiments/compression.py deep [--out runs/compression] [--to DIR]     # 9 mpirun jobs, ~10 min on 2 cores
    python experiments/compression.py report [--out runs/compression] [--to DIR]   # README.md and plots from the JSON
    python experiments/compression.py all --to docs/compression     # all three: the committed report
    python experiments/compression.py all --quick                   # CI-sized; writes quick.json

convex: least squares over a ring of 16 workers, each with its own data (heterogeneous), constant
step; suboptimality f(x_bar) - f* against bytes sent per worker for exact gossip (D-SGD) and
CHOCO-SGD with top-1%, scaled sign and scaled QSGD, decaying step; how many times fewer bytes
CHOCO needs to reach the suboptimality exact gossip reaches.
deep: the CNN on Fashion-MNIST over a ring of 16 workers (4 ranks x 4 workers), D-SGD against
CHOCO with sign and top-k at matched steps, 3 seeds; accuracy (mean and spread) against MB sent.

OUT (default runs/compression, with --quick runs/compression-quick) gets the deep jobs' run
directories, OUT/deep/METHOD-seedS (one is kept only when it records the same command at the same
clean commit, see experiments/provenance.py); convex.json, deep.json, README.md and the plots go
to TO (default: OUT). --quick writes everything to OUT, and `report`
(or `all`) then writes quick.json, the numbers CI compares a rerun against exactly; with --quick,
TO gets that file only (the committed one: docs/compression/quick.json).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import provenance  # noqa: E402
from provenance import machine, rel  # noqa: E402

DEEP_METHODS = {
    "dsgd": ["--algorithm", "dsgd"],
    "choco-sign": ["--algorithm", "choco", "--compress", "sign", "--consensus-step", "0.5"],
    "choco-top-1%": ["--algorithm", "choco", "--compress", "top-k:ratio=0.01", "--consensus-step", "0.1"],
}
DEEP_COMMON = ["--dataset", "fashion-mnist", "--model", "cnn", "--norm", "none", "--topology", "ring",
               "--batch-size", "32", "--lr", "0.1", "--momentum", "0", "--log-every", "1000"]
QUICK_MODEL = ["--model", "mlp"]  # --quick checks the pipeline end to end, not the CNN: a short CI run
QUICK_THREADS = 1  # threads per rank (and of the convex process) in --quick: numbers independent of the cores
PENDING = "pending_rerun"  # meta key of a committed report whose numbers still await a rerun by the current code


def deep(args, code: str) -> dict:
    from dsgd import launcher
    runs = []
    for name, flags in DEEP_METHODS.items():
        for seed in args.seeds:
            run_dir = Path(args.out) / "deep" / f"{name}-seed{seed}"
            cmd = ["-m", "dsgd.train", *DEEP_COMMON, *(QUICK_MODEL if args.quick else []), *flags, "--seed", str(seed),
                   "--workers-per-rank",
                   str(args.workers // args.ranks), "--steps-per-epoch", str(args.steps_per_epoch), "--epochs",
                   str(args.epochs), "--eval-every", str(args.eval_every), "--eval-samples", str(args.eval_samples),
                   "--out", rel(run_dir)]
            line = launcher.mpirun_command(args.ranks, cmd, provenance.python(), threads=args.threads)
            job, kept = provenance.run_job(line, run_dir, code, args.timeout, "compression", f"{name} seed {seed}")
            rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
            runs.append({"method": name, "seed": seed, "steps": [r["step"] for r in rows],
                         "test_acc": [r["test_acc"] for r in rows], "bytes_sent": [r["bytes_sent"] for r in rows],
                         "mb_sent": [r["bytes_sent"] / 1e6 for r in rows], "wall_s": job["job_wall_s"],
                         "kept": kept, "run_dir": rel(run_dir), "command": job["command"]})
            print(f"   acc {rows[-1]['test_acc']:.4f}  {rows[-1]['bytes_sent'] / 1e6:.2f} MB/worker", flush=True)
    return {"runs": runs}


def convex(args) -> dict:
    import torch
    from dsgd.convex import least_squares_curves
    if args.threads:
        torch.set_num_threads(args.threads)
    return least_squares_curves(n=args.workers, steps=args.convex_steps, seed=0)


def quick_metrics(convex_data: dict | None, deep_data: dict | None) -> dict:
    """The numbers a rerun of --quick must reproduce exactly: every recorded convex point, every deep evaluation."""
    out = {}
    if convex_data:
        out["convex"] = {name: {"gamma": m["gamma"], "points": m["points"]} for name, m in convex_data["methods"].items()}
    if deep_data:
        out["deep"] = {f"{r['method']}/seed{r['seed']}": {k: r[k] for k in ("steps", "test_acc", "bytes_sent")}
                       for r in deep_data["runs"]}
    return out


def reach(points, level):
    """(steps, bytes) of the first recorded point at or below `level`, or None."""
    for step, sent, sub in points:
        if sub <= level:
            return step, sent
    return None


def convex_section(data: dict) -> list[str]:
    methods = data["methods"]
    exact = methods["exact gossip (D-SGD)"]["points"]
    marks = [exact[max(0, len(exact) // 10 - 1)], exact[len(exact) * 3 // 10 - 1], exact[-1]]
    prob = data["problem"]
    lines = [f"Least squares, {prob['workers']} workers on a ring, d = {prob['d']}, {prob['rows_per_worker']} rows "
             f"per worker (each its own optimum), step {prob['step']}, {prob['steps']} steps for exact gossip and "
             f"{prob['choco_steps']} for CHOCO, exact "
             f"local gradients, float32 parameters. Suboptimality f(x_bar) - f*.", "",
             "| method | consensus step | final suboptimality | bytes/worker at the end | "
             + " | ".join(f"bytes to reach {m[2]:.3g} (exact gossip at step {m[0]}), times fewer" for m in marks) + " |",
             "|---" * (4 + len(marks)) + "|"]
    for name, m in methods.items():
        pts = m["points"]
        cells = []
        for step, sent, level in marks:
            got = reach(pts, level)
            cells.append("not reached" if got is None else
                         f"{got[1]:.3g} B, step {got[0]}, {sent / got[1]:.1f}x" if got[1] else "0")
        lines.append(f"| {name} | {m['gamma'] if m['gamma'] is not None else '-'} | {pts[-1][2]:.3g} | "
                     f"{pts[-1][1]:.3g} | " + " | ".join(cells) + " |")
    step, sent, level = marks[-1]
    lines.append("")
    for name, m in methods.items():
        if name.startswith("CHOCO"):
            got = reach(m["points"], level)
            lines.append(f"{name} reached exact gossip's final suboptimality ({level:.3g}) with "
                         f"{sent / got[1]:.1f}x fewer bytes." if got else
                         f"{name} did not reach exact gossip's final suboptimality ({level:.3g}) in "
                         f"{data['problem']['choco_steps']} steps (best consensus step of the grid).")
    return lines


def deep_section(data: dict) -> list[str]:
    import statistics
    by = {}
    for r in data["runs"]:
        by.setdefault(r["method"], []).append(r)
    lines = ["| method | seeds | final test acc (mean ± std) | min / max | MB sent per worker | bytes vs D-SGD |",
             "|---|---|---|---|---|---|"]
    dense = statistics.mean(r["mb_sent"][-1] for r in by["dsgd"]) if "dsgd" in by else None
    verdicts = []
    for name, runs in by.items():
        if name != "dsgd" and "dsgd" in by and len(runs) > 1:
            acc, ref = [r["test_acc"][-1] for r in runs], [r["test_acc"][-1] for r in by["dsgd"]]
            gap = statistics.mean(acc) - statistics.mean(ref)
            within = abs(gap) <= statistics.stdev(acc) + statistics.stdev(ref)
            saving = dense / statistics.mean(r["mb_sent"][-1] for r in runs)
            verdicts.append(f"{name} {'matched' if within else 'did not match'} D-SGD's accuracy "
                            f"({gap:+.4f}, {'within' if within else 'outside'} the sum of the two seed spreads) "
                            f"with {saving:.0f}x fewer bytes.")
    for name, runs in by.items():
        acc = [r["test_acc"][-1] for r in runs]
        mb = statistics.mean(r["mb_sent"][-1] for r in runs)
        spread = statistics.stdev(acc) if len(acc) > 1 else 0.0
        lines.append(f"| {name} | {len(runs)} | {statistics.mean(acc):.4f} ± {spread:.4f} | {min(acc):.4f} / "
                     f"{max(acc):.4f} | {mb:.2f} | {mb / dense:.4f} |" if dense else "")
    return lines + [""] + verdicts


def plots(out: Path, convex_data, deep_data) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    made = []
    if convex_data:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, m in convex_data["methods"].items():
            pts = [p for p in m["points"] if p[1] > 0]
            ax.loglog([p[1] for p in pts], [p[2] for p in pts], label=name)
        ax.set_xlabel("bytes sent per worker")
        ax.set_ylabel("f(x_bar) - f*")
        ax.set_title("least squares, ring of 16: suboptimality vs bytes")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "convex_bytes.png", dpi=120)
        made.append("convex_bytes.png")
    if deep_data:
        import numpy as np
        fig, ax = plt.subplots(figsize=(6, 4))
        by = {}
        for r in deep_data["runs"]:
            by.setdefault(r["method"], []).append(r)
        for name, runs in by.items():
            acc = np.array([r["test_acc"] for r in runs])
            mb = np.mean([r["mb_sent"] for r in runs], axis=0)
            ax.errorbar(np.maximum(mb, 1e-3), acc.mean(0), yerr=acc.std(0), marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("MB sent per worker")
        ax.set_ylabel("test accuracy (mean, std over seeds)")
        ax.set_title("CNN on Fashion-MNIST, ring of 16")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "deep_accuracy_vs_mb.png", dpi=120)
        made.append("deep_accuracy_vs_mb.png")
    return made


def report_dir(args) -> Path:
    """Where the JSON, README.md and plots go: TO, except with --quick (OUT)."""
    return Path(args.out) if args.quick or not args.to else Path(args.to)


def report(args) -> int:
    out = report_dir(args)
    load = lambda name: json.loads((out / name).read_text()) if (out / name).is_file() else None  # noqa: E731
    convex_data, deep_data = load("convex.json"), load("deep.json")
    if convex_data is None and deep_data is None:
        sys.exit(f"compression: neither convex.json nor deep.json in {rel(out)}; run convex or deep first")
    lines = ["# Compressed gossip: CHOCO-SGD against exact gossip", ""]
    for title, data, section in (("Convex", convex_data, convex_section), ("Deep", deep_data, deep_section)):
        if data is None:
            continue
        meta = data["meta"]
        lines += [f"## {title}", ""]
        if meta.get(PENDING):
            lines += [f"**Pending a rerun by the current code:** {meta[PENDING]}", ""]
        lines += [f"{provenance.provenance_line(meta)}; machine: "
                  f"{meta['machine']['cpus']} CPUs, {meta['machine']['platform']}, torch {meta['machine']['torch']}, "
                  f"load at start {meta['machine']['load_average_at_start']}; {meta['wall_s']:.0f} s.", ""]
        lines += section(data) + [""]
        if data is deep_data:
            lines += [f"Every job: `{data['runs'][0]['command']}` with the method's flags and seed.", ""]
    images = plots(out, convex_data, deep_data)
    lines += [f"![{name}]({name})" for name in images]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print((out / "README.md").read_text())
    if args.quick:
        data = [d for d in (convex_data, deep_data) if d]
        origin = {k: data[0]["meta"].get(k) for k in ("command", "commit", "date")}
        if len(data) == 2 and data[1]["meta"]["command"] != origin["command"]:
            origin["command"] = f"{origin['command']}; {data[1]['meta']['command']}"
        for where in [out] + ([Path(args.to)] if args.to else []):
            provenance.write_reference(where / "quick.json", origin, quick_metrics(convex_data, deep_data))
            print(f"quick.json in {rel(where)}/")
    return 0


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["convex", "deep", "report", "all"], help="all: convex, deep, then report")
    ap.add_argument("--out", help="deep run directories (and the report, without --to); default runs/compression, "
                                  "with --quick runs/compression-quick")
    ap.add_argument("--to", help="where convex.json, deep.json, README.md and the plots go (default: --out); "
                                 "with --quick, only quick.json")
    ap.add_argument("--threads", type=int, default=None,
                    help=f"threads per rank (default: the launch policy's, from the cores; --quick: {QUICK_THREADS})")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps-per-epoch", type=int, default=100)
    ap.add_argument("--epochs", type=float, default=1.5)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--eval-samples", type=int, default=2000)
    ap.add_argument("--convex-steps", type=int, default=2000)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--quick", action="store_true", help="smoke test: one seed, 4 steps, 8 workers on 2 ranks, the MLP")
    args = ap.parse_args(argv)
    args.out = args.out or str(REPO / "runs" / ("compression-quick" if args.quick else "compression"))
    if args.quick:
        args.seeds, args.steps_per_epoch, args.epochs, args.eval_every, args.eval_samples = [0], 4, 1, 2, 200
        args.workers, args.convex_steps, args.ranks = 8, 60, 2  # 2 ranks x 4 workers: layouts give equal numbers
        args.threads = args.threads or QUICK_THREADS
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be at least 1, got {args.threads}")
    if args.workers % args.ranks:
        ap.error(f"--ranks {args.ranks} must divide --workers {args.workers}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out = str(Path(args.out).resolve())
    to = report_dir(args)
    if args.part != "report":  # a report reads what is there: a directory that does not exist is not made
        to.mkdir(parents=True, exist_ok=True)
    code = provenance.commit()
    command = provenance.script_command("compression.py", sys.argv[1:] if argv is None else argv)
    for part in (["convex", "deep"] if args.part == "all" else [] if args.part == "report" else [args.part]):
        meta = {**provenance.produced_by(command, code), "machine": machine(), "threads": args.threads,
                "quick": args.quick}
        t0 = time.time()
        result = deep(args, code) if part == "deep" else convex(args)
        meta["wall_s"] = time.time() - t0
        (to / f"{part}.json").write_text(json.dumps({"meta": meta, **result}, indent=1))
        print(f"{part}.json in {rel(to)}/")
    return report(args) if args.part in ("report", "all") else 0


if __name__ == "__main__":
    sys.exit(main())

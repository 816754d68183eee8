"""Compare gossip topologies, local SGD and C-SGD on the same training problem at several worker counts.

    python experiments/compare_topologies.py [--workers 8 16] [--steps 224] [--ranks 2] [--out DIR] [--to DIR] [--quick]
    python experiments/compare_topologies.py --workers 16 32 --ranks 4 --epochs 60 --eval-every 500 \\
        -- --dataset cifar10 --data-dir DATA --model resnet20 --norm bn --batch-size 128 --lr 0.1

Each configuration is one real `mpirun -np RANKS python -m mpi4py -m dsgd.train` job with RANKS x K
workers (K = n / RANKS per process). Flags after `--` go to every trainer job and override the
defaults below. OUT (default runs/compare-topologies, with --quick runs/compare-topologies-quick)
gets one run directory per job; results.md, results.json and three plots go to TO (default: OUT;
the committed report is --to docs/topology-comparison). A run directory is kept only when it
records the same command at the same clean commit (experiments/provenance.py). --quick also
writes quick.json, the numbers CI compares a rerun against exactly; with --quick, TO gets that
file only (the committed one: docs/topology-comparison/quick.json).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dsgd import launcher  # noqa: E402
import topologies  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provenance  # noqa: E402
from provenance import machine, rel  # noqa: E402

# Shared by every job: the small CNN without normalization, so mixing only moves parameters.
LOCAL_BATCH = 16
FASHION_MNIST_TRAIN = 60000  # training images; --steps is one epoch, so steps x n x batch must fit
TRAIN_DEFAULTS = ["--dataset", "fashion-mnist", "--model", "cnn", "--norm", "none", "--batch-size", str(LOCAL_BATCH),
                  "--lr", "0.05", "--momentum", "0.9", "--seed", "0"]
QUICK = ("csgd", "ring", "local-h4")
QUICK_THREADS = 1  # threads per rank in --quick: its numbers must not depend on the machine's core count
ROUNDOFF = 1e-9  # consensus distances below this are float round-off of an exact average


def torus_shape(n: int) -> tuple[int, int] | None:
    """The most square rows x cols = n with rows, cols >= 3 (what the torus family accepts), or None."""
    shapes = [(r, n // r) for r in range(3, math.isqrt(n) + 1) if n % r == 0 and n // r >= 3]
    return shapes[-1] if shapes else None


def configurations(n: int) -> tuple[list[dict], list[str]]:
    """The jobs for n workers, and notes on configurations that do not exist at this n."""
    gossip = {"complete": "complete", "ring": "ring", "exponential": "exponential",
              "one-peer-exponential": "one-peer-exponential"}
    notes = []
    shape = torus_shape(n)
    if shape:
        gossip["torus"] = f"torus:rows={shape[0]},cols={shape[1]}"
    else:
        notes.append(f"n={n}: no torus (it needs n = rows x cols with rows, cols >= 3); skipped.")
    configs = [{"key": "csgd", "label": "C-SGD (gradient allreduce)", "flags": ["--algorithm", "csgd"],
                "topology": None, "gap_note": "exact average every step"}]
    for key in ("complete", "ring", "torus", "exponential", "one-peer-exponential"):
        if key in gossip:
            configs.append({"key": key, "label": f"D-SGD {key}", "topology": gossip[key],
                            "flags": ["--algorithm", "dsgd", "--topology", gossip[key]]})
    for h in (4, 16):
        configs.append({"key": f"local-h{h}", "label": f"local SGD H={h}", "topology": None,
                        "flags": ["--algorithm", "local", "--local-steps", str(h)], "local_steps": h,
                        "gap_note": f"exact average every {h} steps"})
    return configs, notes


def spectrum(spec: str | None, n: int) -> dict:
    """lambda2 and spectral gap of the gossip matrix (per step over one period for time-varying graphs)."""
    if spec is None:
        return {"lambda2": None, "spectral_gap": None}
    d = topologies.from_spec(spec, n).describe()
    return {"lambda2": d["lambda2"], "spectral_gap": d["spectral_gap"], "max_out_degree": d["max_out_degree"]}


def trainer_args(config: dict, n: int, args, run_dir: Path) -> list[str]:
    """The `python -m mpi4py` arguments of one job; flags after `--` come late so they win."""
    length = (["--epochs", str(args.epochs)] if args.epochs
              else ["--steps-per-epoch", str(args.steps), "--epochs", "1"])
    return ["-m", "dsgd.train", *config["flags"], *TRAIN_DEFAULTS, *length, "--eval-samples", str(args.eval_samples),
            "--workers-per-rank", str(n // args.ranks), "--eval-every", str(args.eval_every),
            "--log-every", str(max(1, args.eval_every)), *args.trainer_flags, "--out", str(run_dir)]


def run_job(config: dict, n: int, args, code: str) -> dict:
    """Train one configuration under mpirun (or keep its run directory, see provenance.run_job) and
    summarize its metrics.jsonl."""
    run_dir = Path(args.out) / f"n{n}" / config["key"]
    cmd = trainer_args(config, n, args, Path(rel(run_dir)))
    line = launcher.mpirun_command(args.ranks, cmd, provenance.python(), threads=args.threads)
    job, kept = provenance.run_job(line, run_dir, code, args.timeout, "compare_topologies",
                                   f"n={n} {config['label']}")
    shown, wall = job["command"], job["job_wall_s"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    acc = [r["test_acc"] for r in rows]
    print(f"   final test acc {acc[-1]:.4f}, {rows[-1]['bytes_sent'] / 1e6:.1f} MB/worker, {wall:.0f} s", flush=True)
    return {"n": n, "key": config["key"], "label": config["label"], "topology": config["topology"],
            **spectrum(config["topology"], n), "gap_note": config.get("gap_note"),
            "local_steps": config.get("local_steps"),
            "steps": [r["step"] for r in rows], "test_acc": acc,
            "consensus_distance": [r["consensus_distance"] for r in rows],
            "final_test_acc": acc[-1], "best_test_acc": max(acc),
            "final_consensus_distance": rows[-1]["consensus_distance"],
            "bytes_sent_per_worker": rows[-1]["bytes_sent"], "mb_sent_per_worker": rows[-1]["bytes_sent"] / 1e6,
            "trainer_wall_s": rows[-1]["wall_s"], "job_wall_s": wall, "kept": kept, "job_date": job["date"],
            "run_dir": rel(run_dir), "command": shown}


def quick_metrics(results: list[dict]) -> dict:
    """The numbers a rerun of --quick must reproduce exactly, per job."""
    return {f"n{r['n']}/{r['key']}": {k: r[k] for k in ("steps", "test_acc", "consensus_distance",
                                                          "bytes_sent_per_worker")}
            for r in results}


def gap_cell(r: dict) -> str:
    """The spectral gap, or why a configuration without a gossip matrix has none."""
    return f"{r['spectral_gap']:.3f}" if r["spectral_gap"] is not None else f"n/a ({r['gap_note']})"


def write_markdown(path: Path, results: list[dict], meta: dict) -> None:
    m = meta["machine"]
    lines = ["# Topology comparison", "", f"Setup: {meta['setup']}.", "",
             f"{provenance.provenance_line(meta)}, host {m['host']} ({m['cpus']} CPUs, "
             f"{m['platform']}, Python {m['python']}, torch {m['torch']}; 1/5/15-minute load average "
             f"{m['load_average_at_start']} at start, {m['load_average_at_end']} at the end). "
             f"Total wall time {meta['total_wall_s']:.0f} s"
             + (f" ({sum(r['kept'] for r in results)} of the {len(results)} jobs kept from an earlier run of the "
                "same command at the same commit)" if any(r["kept"] for r in results) else "") + ".", "",
             "| n | configuration | final test acc | best test acc | final consensus distance | MB sent / worker "
             "| spectral gap | wall s |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['n']} | {r['label']} | {r['final_test_acc']:.4f} | {r['best_test_acc']:.4f} | "
                     f"{r['final_consensus_distance']:.3g} | {r['mb_sent_per_worker']:.1f} | {gap_cell(r)} | "
                     f"{r['job_wall_s']:.0f} |")
    lines += ["", "Columns: test accuracy of the averaged model x_bar on the first eval-samples test images; "
              "consensus distance (1/n) sum_i ||x_i - x_bar||^2 at the last evaluation (values near 1e-12 are "
              "float round-off of an exact average); bytes each worker "
              "sent, cumulative (a gossip round counts out-degree x model size, an average counts the payload "
              "handed to allreduce); spectral gap 1 - lambda2(W), per step over one period for time-varying "
              "graphs; wall s of the whole mpirun job, start-up included.", ""]
    lines += [f"- {note}" for note in meta["notes"]]
    lines += ["", "## Commands", "", "Launched through `dsgd.launcher`: each line is exactly the command that "
              "ran, from the repository root.", "", "```"]
    lines += [r["command"] for r in results] + ["```", ""]
    path.write_text("\n".join(lines))


def _colors(results: list[dict], plt) -> dict:
    """One colour per configuration, in the same order at every n."""
    order = ["csgd", "complete", "ring", "torus", "exponential", "one-peer-exponential"]
    keys = sorted(dict.fromkeys(r["key"] for r in results), key=lambda k: order.index(k) if k in order else len(order))
    return {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(keys)}


def _plot_curves(results: list[dict], out: Path, plt, field: str, name: str, ylabel: str) -> None:
    """FIELD vs step, one panel per n; consensus on a log scale without the exact zeros."""
    ns, color = sorted({r["n"] for r in results}), _colors(results, plt)
    fig, axes = plt.subplots(1, len(ns), figsize=(6 * len(ns) + 2.5, 4.5), squeeze=False, sharey=True)
    for ax, n in zip(axes[0], ns):
        for r in (r for r in results if r["n"] == n):
            # NaN breaks the line, so a local SGD curve is not drawn across its averages.
            ys = [y if field == "test_acc" or y > ROUNDOFF else math.nan for y in r[field]]
            if not all(math.isnan(y) for y in ys):
                ax.plot(r["steps"], ys, marker="o", ms=3, color=color[r["key"]], label=r["label"])
            if field == "consensus_distance" and r.get("local_steps"):
                for s, y in zip(r["steps"], ys):  # local SGD: how long since its last average
                    if not math.isnan(y):
                        ax.annotate(f"+{s % r['local_steps']}", (s, y), fontsize=7, xytext=(3, 3),
                                    textcoords="offset points", color=color[r["key"]])
        ax.set(title=f"n = {n} workers", xlabel="step", ylabel=ylabel if ax is axes[0][0] else None)
        ax.set_yscale("log" if field == "consensus_distance" else "linear")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: curves stay visible
    if field == "consensus_distance":
        fig.suptitle("exact averages (C-SGD, complete graph, local SGD right after an average) leave 0 or "
                     f"round-off below {ROUNDOFF:g}, not drawn; +k: local SGD k steps after its last average",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(out / name, dpi=120)
    plt.close(fig)


def _plot_bytes(results: list[dict], out: Path, plt) -> None:
    """Final accuracy against MB sent per worker: colour = configuration, marker = n."""
    ns, color = sorted({r["n"] for r in results}), _colors(results, plt)
    keys, markers = list(color), dict(zip(ns, "os^Dv"))
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in results:
        i = keys.index(r["key"])  # later configurations smaller and on top, so equal points stay visible
        ax.scatter(r["mb_sent_per_worker"], r["final_test_acc"], color=color[r["key"]], marker=markers[r["n"]],
                   s=max(20, 120 - 12 * i), zorder=2 + i)
    labels = {r["key"]: r["label"] for r in results}
    handles = [plt.Line2D([], [], color=color[k], marker="o", ls="", label=labels[k]) for k in keys]
    handles += [plt.Line2D([], [], color="black", marker=markers[n], ls="", fillstyle="none", label=f"n = {n}")
                for n in ns]
    ax.legend(handles=handles, fontsize=7, loc="best")
    ax.set(xscale="log", xlabel="MB sent per worker (log)", ylabel="final test accuracy",
           title="communication vs final accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "bytes_vs_accuracy.png", dpi=120)
    plt.close(fig)


def plot(results: list[dict], out: Path) -> None:
    """accuracy.png, consensus.png and bytes_vs_accuracy.png in OUT."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    _plot_curves(results, out, plt, "test_acc", "accuracy.png", "test accuracy")
    _plot_curves(results, out, plt, "consensus_distance", "consensus.png", "consensus distance (log)")
    _plot_bytes(results, out, plt)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[8, 16], help="worker counts n to compare")
    ap.add_argument("--ranks", type=int, default=2, help="MPI processes per job; each holds n / ranks workers")
    ap.add_argument("--steps", type=int, default=224,
                    help="training steps per job, as one epoch: steps x n x batch must fit the training set")
    ap.add_argument("--epochs", type=float, default=0, help="train this many epochs instead of --steps")
    ap.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: steps / 8)")
    ap.add_argument("--eval-samples", type=int, default=2000, help="test images per evaluation (0: all)")
    ap.add_argument("--out", help="run directories (and the report, without --to); default runs/compare-topologies, "
                                  "with --quick runs/compare-topologies-quick")
    ap.add_argument("--to", help="where the report goes (default: --out); with --quick, only quick.json goes there")
    ap.add_argument("--threads", type=int, default=None,
                    help=f"threads per rank (default: the launch policy's, from the cores; --quick: {QUICK_THREADS})")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before one job is killed")
    ap.add_argument("--quick", action="store_true", help=f"smoke test: n=8, {', '.join(QUICK)}, 10 steps")
    ap.add_argument("trainer_flags", nargs="*", help="flags after -- go to every trainer job")
    args = ap.parse_args(argv)
    args.out = args.out or str(REPO / "runs" / ("compare-topologies-quick" if args.quick else "compare-topologies"))
    if args.quick:
        args.workers, args.steps, args.epochs, args.eval_every, args.eval_samples = [8], 10, 0, 5, 500
        args.threads = args.threads or QUICK_THREADS
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be at least 1, got {args.threads}")
    for flag, values in (("--workers", args.workers), ("--ranks", [args.ranks]), ("--steps", [args.steps])):
        if min(values) < 1:
            ap.error(f"{flag} must be at least 1, got {min(values)}")
    if args.epochs and not args.eval_every:
        ap.error("--epochs needs --eval-every (the default, steps / 8, assumes --steps)")
    args.eval_every = args.eval_every or max(1, args.steps // 8)
    too_long = [n for n in args.workers if not args.epochs and not args.trainer_flags
                and args.steps * n * LOCAL_BATCH > FASHION_MNIST_TRAIN]
    if too_long:
        ap.error(f"--steps {args.steps} x n={too_long[0]} x batch {LOCAL_BATCH} is more than one epoch of "
                 f"Fashion-MNIST ({FASHION_MNIST_TRAIN}); use fewer steps or --epochs")
    bad = [n for n in args.workers if n % args.ranks]
    if bad:
        ap.error(f"--ranks {args.ranks} must divide every worker count; it does not divide {bad}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    args.out = str(out)
    code = provenance.commit()
    meta = {**provenance.produced_by(provenance.script_command("compare_topologies.py",
                                                               sys.argv[1:] if argv is None else argv), code),
            "machine": machine(), "ranks": args.ranks, "threads": args.threads, "quick": args.quick, "notes": [],
            "trainer_flags": TRAIN_DEFAULTS + args.trainer_flags}
    length = f"{args.epochs:g} epochs" if args.epochs else f"{args.steps} steps"
    meta["setup"] = (f"every job `{' '.join(meta['trainer_flags'])}`, {length}, evaluation every {args.eval_every} "
                     f"steps on {args.eval_samples or 'all'} test images, {args.ranks} MPI ranks x n / {args.ranks} "
                     f"workers each")
    results, t0 = [], time.time()
    for n in args.workers:
        configs, notes = configurations(n)
        meta["notes"] += notes
        if args.quick:
            configs = [c for c in configs if c["key"] in QUICK]
        results += [run_job(c, n, args, code) for c in configs]
    meta["total_wall_s"] = time.time() - t0
    meta["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    to = out if args.quick or not args.to else Path(args.to).resolve()
    to.mkdir(parents=True, exist_ok=True)
    (to / "results.json").write_text(json.dumps({"meta": meta, "runs": results}, indent=1))
    write_markdown(to / "results.md", results, meta)
    plot(results, to)
    print((to / "results.md").read_text())
    print(f"results.md, results.json, accuracy.png, consensus.png, bytes_vs_accuracy.png in {rel(to)}/")
    if args.quick:
        for where in [out] + ([Path(args.to)] if args.to else []):
            provenance.write_reference(where / "quick.json", {k: meta[k] for k in ("command", "commit", "date")},
                                       quick_metrics(results))
            print(f"quick.json in {rel(where)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

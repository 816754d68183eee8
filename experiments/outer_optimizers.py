"""Outer optimizers on a language model: DiLoCo and its relatives against C-SGD, local AdamW and QSR.

    python experiments/outer_optimizers.py run [--out runs/outer] [--to DIR]      # 33 mpirun jobs, ~20 min on 2 cores
    python experiments/outer_optimizers.py report [--out runs/outer] [--to DIR]   # README.md and plots from the JSON
    python experiments/outer_optimizers.py all --to docs/outer-optimizers          # both: the committed report
    python experiments/outer_optimizers.py all --quick                             # CI-sized: 3 arms, 16 steps, 1 rank x 4

The byte-level GPT (--model gpt) on the fortunes text, 8 workers (2 ranks x 4), AdamW inside with a
cosine schedule, 3 seeds per arm. Each arm's validation loss is plotted against steps, against the
bytes each worker sent, and against the wall time the cost model (dsgd.cost) predicts for 8 nodes of
one worker on a 1 Gb/s network: the compute time per step measured here, plus each communication
event priced as the trainer makes it (an average: a ring allreduce of its bytes; a compressed average:
a ring allgather of the payloads; a graph step: each worker sends its model to its out-neighbours).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import provenance  # noqa: E402
from provenance import machine, rel  # noqa: E402

H = 16
ARMS = {
    "C-SGD": ["--algorithm", "csgd"],
    f"local AdamW (H={H})": ["--algorithm", "local", "--local-steps", str(H)],
    f"QSR (H>={H})": ["--algorithm", "qsr", "--local-steps", str(H), "--qsr-alpha", "0.012"],
    f"DiLoCo (H={H})": ["--algorithm", "diloco", "--local-steps", str(H)],
    "gossip DiLoCo, ring": ["--algorithm", "gossip-diloco", "--local-steps", str(H), "--topology", "ring"],
    "gossip DiLoCo, exponential": ["--algorithm", "gossip-diloco", "--local-steps", str(H), "--topology",
                                   "exponential"],
    "gossip DiLoCo, one random peer": ["--algorithm", "gossip-diloco", "--local-steps", str(H), "--topology",
                                       "random-one-peer:seed=1"],
    "streaming DiLoCo (F=4, tau=2)": ["--algorithm", "streaming-diloco", "--local-steps", str(H), "--fragments", "4",
                                      "--fragment-delay", "2", "--fragment-alpha", "0.5"],
    "DiLoCo, int8 outer gradients": ["--algorithm", "diloco", "--local-steps", str(H), "--compress", "int8"],
    "DiLoCo, sign outer gradients": ["--algorithm", "diloco", "--local-steps", str(H), "--compress", "sign"],
    "SPARTA (p=0.05)": ["--algorithm", "sparta", "--sparta-fraction", "0.05"],
}
QUICK_ARMS = ("C-SGD", f"DiLoCo (H={H})", "streaming DiLoCo (F=4, tau=2)")
COMMON = ["--dataset", "fortunes", "--model", "gpt", "--context", "64", "--optimizer", "adamw", "--lr", "0.003",
          "--weight-decay", "0.1", "--decay", "cosine", "--batch-size", "16", "--replacement", "true", "--log-every", "1000"]
GBIT = 125e6        # bytes per second of a 1 Gb/s link
LATENCY = 50e-6     # seconds per message on it


# -- running -----------------------------------------------------------------------------------
def run(args, code: str) -> dict:
    from dsgd import launcher
    runs = []
    for name in args.arms:
        for seed in args.seeds:
            run_dir = Path(args.out) / slug(name) / f"seed{seed}"
            cmd = ["-m", "dsgd.train", *COMMON, *ARMS[name], "--seed", str(seed), "--workers-per-rank",
                   str(args.workers // args.ranks), "--steps-per-epoch", str(args.steps), "--epochs", "1",
                   "--eval-every", str(args.eval_every), "--eval-samples", str(args.eval_samples), "--out", rel(run_dir)]
            line = launcher.mpirun_command(args.ranks, cmd, provenance.python(), threads=args.threads)
            job, kept = provenance.run_job(line, run_dir, code, args.timeout, "outer_optimizers", f"{name} seed {seed}")
            rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
            rows = [r for r in rows if "test_loss" in r]
            runs.append({"arm": name, "seed": seed, "steps": [r["step"] for r in rows],
                         "val_loss": [r["test_loss"] for r in rows], "bytes_sent": [r["bytes_sent"] for r in rows],
                         "compute_s": rows[-1]["compute_s"], "wall_s": job["job_wall_s"],
                         "events": comm_events(run_dir, args.ranks), "kept": kept, "command": job["command"]})
            print(f"   validation loss {rows[-1]['test_loss']:.4f}, {rows[-1]['bytes_sent'] / 1e6:.2f} MB/worker",
                  flush=True)
    return {"runs": runs}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


# -- the communication a run made, step by step, rebuilt from its settings ---------------------------
def comm_events(run_dir: Path, ranks: int) -> list:
    """[(step, kind, bytes per worker)] of every communication: kind 'average', 'allgather' (a codec's
    payloads), or a topology spec (a graph step). Rebuilt from the run's config.yaml with the trainer's
    own builders, so the schedule (QSR's rounds too) is the one that ran."""
    from dsgd.compress import parse_codec
    from dsgd.config import from_dict
    from dsgd.train.rundir import read_settings
    from dsgd.data.datasets import load_dataset
    from dsgd.models import build_model_for
    from dsgd.train import build
    cfg = from_dict(read_settings(run_dir))
    data = load_dataset(cfg.data.dataset, cfg.data.data_dir, train=True, context=cfg.data.context)
    n = cfg.run.workers_per_rank * ranks
    plan = build.plan(cfg, ranks, len(data))
    lr = build.lr_schedule(cfg, plan)
    rule = build.rule(cfg, plan, lr)
    model = build_model_for(cfg.model.model, data)
    sizes = [p.numel() for p in model.parameters()]
    model_bytes = 4 * sum(sizes)
    algo = cfg.algo.algorithm
    codec = None if cfg.compress.compress == "none" else parse_codec(cfg.compress.compress)
    events = []
    if algo == "streaming-diloco":
        from dsgd.rules.outer import fragments_by_layer
        groups = fragments_by_layer(sizes, cfg.outer.fragments)
        for t in range(plan.total_steps):
            for f, g in enumerate(groups):
                if (t + 1) % cfg.algo.local_steps == (f * cfg.algo.local_steps) // len(groups):
                    events.append((t, "average", 4 * sum(sizes[i] for i in g)))
        return events
    for t in range(plan.total_steps):
        act = rule.action(t)
        W = act.grad_W if act.grad_W is not None else act.param_W
        if W is None:
            continue
        kind = "average" if getattr(W, "kind", None) == "average" or _is_average(W, n) else cfg.gossip.topology
        nbytes = model_bytes * (cfg.outer.sparta_fraction if algo == "sparta" else 1)
        if codec is not None:
            nbytes = codec.payload_bytes(sum(sizes))
            kind = "allgather" if kind == "average" else kind
        events.append((t, kind, nbytes))
    return events


def _is_average(W, n: int) -> bool:
    import numpy as np
    M = np.asarray(W)
    return M.shape == (n, n) and bool(np.allclose(M, 1.0 / n))


def predicted_seconds(run: dict, n: int, K: int) -> list:
    """Predicted wall seconds at each evaluation step on N nodes of one worker, 1 Gb/s: compute per step
    (measured here, per worker) plus the events' seconds from dsgd.cost's alpha-beta rules."""
    import topologies
    from dsgd.cost.cluster import Cluster, Link
    from dsgd.cost.traffic import rank_plans, ring_allreduce_seconds, sparse_seconds, traffic
    link = Link(LATENCY, GBIT)
    cluster = Cluster(nodes=n, ranks_per_node=1, intra=link, inter=link)
    steps = run["steps"][-1]
    compute = run["compute_s"] / steps / K   # a rank's compute holds its K workers
    graphs, comm = {}, {}
    for t, kind, nbytes in run["events"]:
        if kind == "average":
            s = ring_allreduce_seconds(cluster, nbytes)
        elif kind == "allgather":
            s = (n - 1) * link.seconds(nbytes)
        else:
            topo = graphs.setdefault(kind, topologies.from_spec(kind, n))
            s = float(sparse_seconds(traffic(rank_plans(topo, t, n, 1), cluster, nbytes), cluster).max())
        comm[t] = comm.get(t, 0.0) + s
    out, total, mark = [], 0.0, 0
    for step in run["steps"]:
        while mark < step:
            total += compute + comm.get(mark, 0.0)
            mark += 1
        out.append(total)
    return out


# -- the report ---------------------------------------------------------------------------------
def by_arm(data: dict) -> dict:
    out = {}
    for r in data["runs"]:
        out.setdefault(r["arm"], []).append(r)
    return out


def table(data: dict, n: int, K: int) -> list[str]:
    arms = by_arm(data)
    lines = ["| arm | seeds | final validation loss (mean ± std) | min / max | MB sent per worker | "
             "synchronizations | peak MB per step | predicted minutes at 1 Gb/s |", "|---" * 8 + "|"]
    for name, runs in arms.items():
        loss = [r["val_loss"][-1] for r in runs]
        mb = statistics.mean(r["bytes_sent"][-1] for r in runs) / 1e6
        syncs = statistics.mean(len({t for t, _, _ in r["events"]}) for r in runs)
        peak = max((b for r in runs for _, _, b in r["events"]), default=0) / 1e6
        minutes = statistics.mean(predicted_seconds(r, n, K)[-1] for r in runs) / 60
        spread = statistics.stdev(loss) if len(loss) > 1 else 0.0
        lines.append(f"| {name} | {len(runs)} | {statistics.mean(loss):.4f} ± {spread:.4f} | {min(loss):.4f} / "
                     f"{max(loss):.4f} | {mb:.1f} | {syncs:.0f} | {peak:.3f} | {minutes:.2f} |")
    return lines


def verdicts(data: dict) -> list[str]:
    arms = by_arm(data)

    def mean_sd(name):
        loss = [r["val_loss"][-1] for r in arms[name]]
        return statistics.mean(loss), statistics.stdev(loss) if len(loss) > 1 else 0.0

    def compare(a, b):
        (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
        gap = ma - mb
        return gap, abs(gap) <= sa + sb
    out = []
    dil, csgd = f"DiLoCo (H={H})", "C-SGD"
    if dil in arms and csgd in arms:
        gap, within = compare(dil, csgd)
        syncs = max(1, [len({t for t, _, _ in r["events"]}) for r in arms[dil]][0])
        ref = [len({t for t, _, _ in r["events"]}) for r in arms[csgd]][0]
        out.append(f"DiLoCo with H={H} {'reached' if within or gap < 0 else 'did not reach'} C-SGD's validation loss "
                   f"({gap:+.4f}, {'within' if within else 'outside'} the sum of the two seed spreads) with "
                   f"{ref / syncs:.0f}x fewer synchronizations ({syncs} against {ref}).")
    ring = "gossip DiLoCo, ring"
    if ring in arms and dil in arms:
        gap, within = compare(ring, dil)
        out.append(f"Over a ring instead of the complete graph, DiLoCo's validation loss changed by {gap:+.4f} "
                   f"({'within' if within else 'outside'} the seed spreads).")
    stream = "streaming DiLoCo (F=4, tau=2)"
    if stream in arms and dil in arms:
        gap, within = compare(stream, dil)
        peak_s = max(b for r in arms[stream] for _, _, b in r["events"])
        peak_d = max(b for r in arms[dil] for _, _, b in r["events"])
        out.append(f"Streaming DiLoCo's peak bytes per step were {peak_s / peak_d:.2f} of DiLoCo's, and its "
                   f"validation loss differed by {gap:+.4f} ({'within' if within else 'outside'} the seed spreads).")
    for codec in ("int8", "sign"):
        name = f"DiLoCo, {codec} outer gradients"
        if name in arms and dil in arms:
            gap, within = compare(name, dil)
            out.append(f"{codec} outer gradients changed DiLoCo's validation loss by {gap:+.4f} "
                       f"({'within' if within else 'outside'} the seed spreads).")
    return out


def plots(out: Path, data: dict, n: int, K: int) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    made = []
    for key, label, fname, xs in (
            ("steps", "step", "loss_vs_steps.png", lambda r: r["steps"]),
            ("bytes", "MB sent per worker", "loss_vs_bytes.png", lambda r: [b / 1e6 for b in r["bytes_sent"]]),
            ("time", "predicted minutes, 8 nodes on 1 Gb/s", "loss_vs_predicted_time.png",
             lambda r: [s / 60 for s in predicted_seconds(r, n, K)])):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.set_prop_cycle(color=plt.cm.tab20.colors[::2] + plt.cm.tab20.colors[1::2])  # 20 distinct arms
        for name, runs in by_arm(data).items():
            x = np.mean([xs(r) for r in runs], axis=0)
            y = np.array([r["val_loss"] for r in runs])
            ax.plot(x, y.mean(0), label=name)
            ax.fill_between(x, y.min(0), y.max(0), alpha=0.2)
        if key == "bytes":
            ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel(label)
        ax.set_ylabel("validation loss (band: min-max over seeds)")
        ax.set_title("byte-level GPT on fortunes, 8 workers")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
        made.append(fname)
    return made


def report(args) -> int:
    out = Path(args.out) if args.quick or not args.to else Path(args.to)
    path = out / "results.json"
    if not path.is_file():
        sys.exit(f"outer_optimizers: no results.json in {rel(out)}; run `run` first")
    data = json.loads(path.read_text())
    meta = data["meta"]
    n, K = meta["workers"], meta["workers"] // meta["ranks"]
    lines = ["# Outer optimizers on a language model", "",
             f"{provenance.provenance_line(meta)}; machine: {meta['machine']['cpus']} CPUs, "
             f"{meta['machine']['platform']}, torch {meta['machine']['torch']}, load at start "
             f"{meta['machine']['load_average_at_start']}; {meta['wall_s'] / 60:.1f} min.", "",
             f"Byte-level GPT (2 pre-norm blocks of width 64, context 64) on the Debian package fortunes, "
             f"{n} workers ({meta['ranks']} ranks x {K}), AdamW lr 3e-3 with a cosine decay and weight decay 0.1, "
             f"local batch 16 drawn with replacement, {meta['steps']} steps, validation loss on {meta['eval_samples']} held-out windows "
             f"of the last tenth of the text. Outer step: Nesterov SGD, lr 0.7, momentum 0.9.", "",
             *table(data, n, K), "", *verdicts(data), "",
             f"Predicted time: compute per step measured here (one worker's share), plus every communication "
             f"priced on {n} nodes of one worker at 1 Gb/s and {LATENCY * 1e6:.0f} us per message "
             f"(dsgd.cost: ring allreduce for an average, ring allgather of the payloads for a compressed "
             f"average, each worker's out-neighbours for a graph step); it ignores overlap.", "",
             f"Every job: `{data['runs'][0]['command']}` with the arm's flags and seed.", ""]
    lines += [f"![{name}]({name})" for name in plots(out, data, n, K)]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print((out / "README.md").read_text())
    return 0


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["run", "report", "all"])
    ap.add_argument("--out", help="run directories (and the report without --to); default runs/outer")
    ap.add_argument("--to", help="where results.json, README.md and the plots go (default: --out)")
    ap.add_argument("--threads", type=int, default=1, help="threads per rank")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=384)
    ap.add_argument("--eval-every", type=int, default=64)
    ap.add_argument("--eval-samples", type=int, default=512)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), help="which arms (names as in the table)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 arms, one seed, 16 steps, 4 workers in one rank")
    args = ap.parse_args(argv)
    args.out = args.out or str(REPO / "runs" / ("outer-quick" if args.quick else "outer"))
    if args.quick:
        args.arms, args.seeds, args.steps, args.eval_every, args.eval_samples = list(QUICK_ARMS), [0], 16, 8, 64
        args.workers, args.ranks = 4, 1
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        ap.error(f"unknown arm {unknown[0]!r}; choose from {', '.join(ARMS)}")
    if args.workers % args.ranks:
        ap.error(f"--ranks {args.ranks} must divide --workers {args.workers}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out = str(Path(args.out).resolve())
    to = Path(args.out) if args.quick or not args.to else Path(args.to)
    if args.part != "report":  # a report reads what is there: a directory that does not exist is not made
        to.mkdir(parents=True, exist_ok=True)
    code = provenance.commit()
    if args.part in ("run", "all"):
        command = provenance.script_command("outer_optimizers.py", sys.argv[1:] if argv is None else argv)
        meta = {**provenance.produced_by(command, code), "machine": machine(), "workers": args.workers,
                "ranks": args.ranks, "steps": args.steps, "eval_samples": args.eval_samples, "quick": args.quick}
        t0 = time.time()
        result = run(args, code)
        meta["wall_s"] = time.time() - t0
        (to / "results.json").write_text(json.dumps({"meta": meta, **result}, indent=1))
    return report(args) if args.part in ("report", "all") else 0


if __name__ == "__main__":
    sys.exit(main())

"""Training through lost ranks: an elastic run of 8 ranks that loses several of them at seeded random
steps, against the same run without failures, over several seeds.

    python experiments/elastic_failures.py run    [--seeds 0 1 2] [--ranks 8] [--kills 3] [--steps 480]
                                                  [--out runs/elastic-failures]
    python experiments/elastic_failures.py report [--out runs/elastic-failures] [--to docs/elastic-failures]
    python experiments/elastic_failures.py all --to docs/elastic-failures
    python experiments/elastic_failures.py all --quick       (2 ranks x 2 workers, one kill, a few steps)

Question: what does losing workers mid-run cost in final accuracy, when the survivors go on without a
restart (`--elastic true`, `--lost-data reassign`)? Each seed runs twice with the same settings:
uninterrupted, and with `DSGD_FAULT` killing ranks (SIGKILL) at steps drawn from the seed, one of
them while a checkpoint is written. Both runs use the elastic mode, so they differ only in the
failures. A run is rerun unless its directory holds the same command at the same clean commit.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))

import provenance  # noqa: E402

TRAIN = ["--dataset", "fashion-mnist", "--model", "cnn", "--norm", "none", "--algorithm", "dsgd",
         "--topology", "ring", "--batch-size", "32", "--lr", "0.05", "--momentum", "0.9", "--eval-samples", "2000",
         "--log-every", "1000", "--lost-data", "reassign", "--elastic", "true"]
QUICK = {"ranks": 2, "workers_per_rank": 2, "kills": 1, "steps": 24, "seeds": [0]}


def kills_for(seed: int, ranks: int, kills: int, steps: int, checkpoint_every: int) -> list:
    """(rank, where, step) of each kill: distinct ranks, rank 0 spared (it prints the run's result
    line), steps spread over the run's middle; the last kill comes while a checkpoint is written."""
    draw = random.Random(1000 + seed)
    victims = draw.sample(range(1, ranks), kills)
    spots = sorted(draw.sample(range(steps // 8, steps - steps // 8), kills))
    out = [(r, "step", s) for r, s in zip(victims, spots)]
    if kills:
        r, _, s = out[-1]
        out[-1] = (r, "checkpoint", max(checkpoint_every, s // checkpoint_every * checkpoint_every))
    return out


def fault_spec(kills: list) -> str:
    return ",".join(f"{r}@{s}" if where == "step" else f"{r}@checkpoint:{s}" for r, where, s in kills)


def epoch_steps(steps: int, workers: int, train_size: int = 60_000, batch: int = 32) -> int:
    """The largest number of steps per epoch that divides STEPS and fits one pass over the training set."""
    full = train_size // (workers * batch)
    return max(d for d in range(1, min(steps, full) + 1) if steps % d == 0)


def job_line(args, seed: int, kills: list, run_dir: Path) -> list:
    from dsgd import launcher
    spe = epoch_steps(args.steps, args.ranks * args.workers_per_rank)
    train = ["-m", "dsgd.train", *TRAIN, "--workers-per-rank", str(args.workers_per_rank), "--epochs",
             str(args.steps // spe), "--steps-per-epoch", str(spe), "--eval-every", str(args.eval_every), "--checkpoint-every",
             str(args.checkpoint_every), "--seed", str(seed), "--out", provenance.rel(run_dir)]
    line = launcher.mpirun_command(args.ranks, train, threads=1)
    line = [line[0], "--with-ft", "ulfm", *line[1:]]
    if kills:
        line = ["env", f"DSGD_FAULT={fault_spec(kills)}", line[0], "-x", "DSGD_FAULT", *line[1:]]
    return line


def run(args) -> list:
    code, rows = provenance.commit(), []
    for seed in args.seeds:
        for failures in (False, True):
            kills = kills_for(seed, args.ranks, args.kills, args.steps, args.checkpoint_every) if failures else []
            run_dir = Path(args.out) / f"seed{seed}-{'failures' if failures else 'uninterrupted'}"
            job, _ = provenance.run_job(job_line(args, seed, kills, run_dir), run_dir, code, args.timeout,
                                        "elastic_failures.py", f"seed {seed}, {len(kills)} kill(s)")
            rows.append(row(seed, kills, run_dir, job))
    return rows


def row(seed: int, kills: list, run_dir: Path, job: dict) -> dict:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in lines if "test_acc" in r]
    changes = [r for r in lines if r.get("event") == "membership"]
    return {"seed": seed, "failures": bool(kills), "kills": [list(k) for k in kills], "command": job["command"],
            "final_step": evals[-1]["step"], "test_acc": evals[-1]["test_acc"], "test_loss": evals[-1]["test_loss"],
            "curve": [[r["step"], r["test_acc"]] for r in evals], "wall_s": evals[-1]["wall_s"],
            "changes": [{k: c[k] for k in ("step", "lost_ranks", "workers_before", "workers_after", "topology",
                                           "recovered_s")} for c in changes]}


def summarize(rows: list) -> dict:
    out = {}
    for failures in (False, True):
        acc = [r["test_acc"] for r in rows if r["failures"] == failures]
        out["failures" if failures else "uninterrupted"] = {
            "runs": len(acc), "test_acc_mean": statistics.mean(acc),
            "test_acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0, "test_acc": acc}
    recovered = [c["recovered_s"] for r in rows for c in r["changes"]]
    out["recovered_s_max"] = max(recovered) if recovered else None
    out["changes"] = len(recovered)
    return out


def verdict(summary: dict, rows: list) -> list:
    u, f = summary["uninterrupted"], summary["failures"]
    gap = f["test_acc_mean"] - u["test_acc_mean"]
    spread = max(u["test_acc_std"], f["test_acc_std"])
    every = all(r["final_step"] == rows[0]["final_step"] for r in rows)
    lines = [f"Every run {'reached' if every else 'did NOT all reach'} its last step; the {summary['changes']} "
             f"changes of membership were each recovered within {summary['recovered_s_max']:.2f} s of the failed "
             f"step's start." if summary["recovered_s_max"] is not None else "No change of membership happened."]
    if u["runs"] > 1:
        size = "within" if abs(gap) <= 2 * spread else "outside"
        lines.append(f"Final test accuracy: {f['test_acc_mean']:.4f} ± {f['test_acc_std']:.4f} with failures against "
                     f"{u['test_acc_mean']:.4f} ± {u['test_acc_std']:.4f} uninterrupted (mean ± standard deviation "
                     f"over {u['runs']} seeds): a difference of {gap:+.4f}, {size} twice the larger spread.")
    else:
        lines.append(f"Final test accuracy: {f['test_acc_mean']:.4f} with failures, {u['test_acc_mean']:.4f} "
                     f"uninterrupted (one seed: no spread).")
    return lines


def plot(rows: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for failures, color in ((False, "tab:blue"), (True, "tab:red")):
        group = [r for r in rows if r["failures"] == failures]
        steps = [s for s, _ in group[0]["curve"]]
        values = [[a for _, a in r["curve"]] for r in group]
        mean = [statistics.mean(v) for v in zip(*values)]
        ax.plot(steps, mean, color=color, label="with failures" if failures else "uninterrupted")
        ax.fill_between(steps, [min(v) for v in zip(*values)], [max(v) for v in zip(*values)], color=color,
                        alpha=0.2)
    for r in rows:
        for c in r["changes"]:
            ax.axvline(c["step"], color="tab:red", alpha=0.25, lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("test accuracy of the average model")
    ax.set_title("elastic D-SGD (ring): mean and range over seeds; red lines: lost ranks")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(args, rows: list, meta: dict) -> None:
    to = Path(args.to or args.out)
    to.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)
    (to / "results.json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": rows}, indent=1) + "\n")
    plot(rows, to / "accuracy.png")
    table = ["| seed | run | kills (rank@step) | workers at the end | final test acc | wall s |", "|---|---|---|---|---|---|"]
    for r in rows:
        kills = ", ".join(f"{k[0]}@{'checkpoint:' if k[1] == 'checkpoint' else ''}{k[2]}" for k in r["kills"]) or "none"
        end = r["changes"][-1]["workers_after"] if r["changes"] else meta["workers"]
        table.append(f"| {r['seed']} | {'failures' if r['failures'] else 'uninterrupted'} | {kills} | {end} | "
                     f"{r['test_acc']:.4f} | {r['wall_s']:.0f} |")
    text = [f"# Training through lost ranks: {meta['ranks']} ranks, {meta['kills']} killed per run", "",
            "Question: what does losing workers in the middle of a run cost in final accuracy, when the survivors go "
            "on without a restart (`--elastic true`, the lost workers' data reassigned)?", "",
            f"{provenance.provenance_line(meta)}, on `{meta['cpu_model']}` ({meta['machine']['cpus']} cores shared by "
            f"all ranks; load average {meta['machine']['load_average_at_start'][0]:g} when it started). Fashion-MNIST, "
            f"the small CNN, D-SGD on a ring with momentum, {meta['ranks']} ranks x {meta['workers_per_rank']} "
            f"worker(s), {rows[0]['final_step']} steps. One failure run's command:", "", "```bash",
            next(r["command"] for r in rows if r["failures"]), "```", "", *table, "", *verdict(summary, rows), "",
            "![accuracy](accuracy.png)", "",
            "Kills are SIGKILLs a rank sends itself (`DSGD_FAULT`, docs/elastic.md): as a training step starts, and "
            "the last one while a checkpoint is written. Both arms run in elastic mode, so they differ only in "
            "the failures. A replacement joining the run is not part of this experiment: the command-line trainer "
            "only shrinks (docs/elastic.md, limits)."]
    (to / "README.md").write_text("\n".join(text) + "\n")
    print("\n".join(table + [""] + verdict(summary, rows)))
    print(f"report in {provenance.rel(to)}/")


def lscpu_model() -> str:
    import subprocess
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["run", "report", "all"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--workers-per-rank", type=int, default=1)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--steps", type=int, default=480)
    ap.add_argument("--eval-every", type=int, default=0, help="default: an eighth of --steps")
    ap.add_argument("--checkpoint-every", type=int, default=0, help="default: an eighth of --steps")
    ap.add_argument("--quick", action="store_true", help="2 ranks x 2 workers, one kill, 24 steps, one seed")
    ap.add_argument("--out", default=str(REPO / "runs" / "elastic-failures"))
    ap.add_argument("--to", help="where README.md, results.json and the plot go (default: --out)")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    if args.kills >= args.ranks:
        ap.error(f"--kills {args.kills} must leave a survivor besides rank 0: at most --ranks - 1 = {args.ranks - 1}")
    args.eval_every = args.eval_every or max(1, args.steps // 8)
    args.checkpoint_every = args.checkpoint_every or max(1, args.steps // 8)
    command = provenance.script_command("elastic_failures.py", sys.argv[1:] if argv is None else argv)
    meta = {**provenance.produced_by(command), "machine": provenance.machine(), "cpu_model": lscpu_model(),
            "ranks": args.ranks, "workers_per_rank": args.workers_per_rank, "kills": args.kills,
            "workers": args.ranks * args.workers_per_rank}
    runs = Path(args.out) / "runs.json"
    if args.part in ("run", "all"):
        t0 = time.time()
        rows = run(args)
        meta["wall_s"] = time.time() - t0
        runs.parent.mkdir(parents=True, exist_ok=True)
        runs.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    else:
        saved = json.loads(runs.read_text())
        rows, meta = saved["rows"], {**saved["meta"], "report_command": command}
    if args.part in ("report", "all"):
        report(args, rows, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training through lost ranks: an elastic run of 8 ranks that loses several of them at seeded random
steps, against the same run without failures, over several seeds.

    python experiments/elastic_failures.py run    [--seeds 0 1 2] [--ranks 8] [--kills 3] [--steps 480]
                                                  [--out runs/elastic-failures]
    python experiments/elastic_failures.py report [--out runs/elastic-failures] [--to docs/elastic-failures]
    python experiments/elastic_failures.py all --to docs/elastic-failures
    python experiments/elastic_failures.py all --quick       (2 ranks x 2 workers, one kill, a few steps)
    ... --modes trainer replacements                          (the default: both)

Question: what does losing workers mid-run cost in final accuracy, when the survivors go on without a
restart (`--elastic true`, `--lost-data reassign`)? Each seed runs twice with the same settings:
uninterrupted, and with `DSGD_FAULT` killing ranks (SIGKILL) at steps drawn from the seed, one of
them while a checkpoint is written. Both runs use the elastic mode, so they differ only in the
failures. Two modes: `trainer` runs `python -m dsgd.train --elastic true` (the world shrinks; one
kill comes while a checkpoint is written); `replacements` runs your-own-loop example
examples/elastic_training.py with replacements on, so a new process takes each lost rank's place
(every kill as a step starts). A run is rerun unless its directory holds the same command at the
same clean commit.
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
QUICK = {"ranks": 2, "workers_per_rank": 2, "kills": 1, "steps": 24, "seeds": [0], "modes": ["trainer"]}
MODES = ("trainer", "replacements")


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
    line = launcher.fault_tolerant(launcher.mpirun_command(args.ranks, train, threads=1))
    if kills:
        line = ["env", f"DSGD_FAULT={fault_spec(kills)}", line[0], "-x", "DSGD_FAULT", *line[1:]]
    return line


def replacement_line(args, seed: int, kills: list, run_dir: Path) -> list:
    """The example loop with replacements on; every kill as a step starts (it has no checkpoints)."""
    from dsgd import launcher
    spec = ",".join(f"{r}@{s}" for r, _, s in kills)
    example = ["examples/elastic_training.py", "--steps", str(args.steps), "--eval-every", str(args.eval_every),
               "--seed", str(seed), "--json", f"{provenance.rel(run_dir)}/result.json"]
    if kills:
        example += ["--kill", spec, "--replace"]
    return launcher.fault_tolerant(launcher.mpirun_command(args.ranks, example, threads=1), replacements=True)


def run(args) -> list:
    code, rows = provenance.commit(), []
    for mode in args.modes:
        for seed in args.seeds:
            for failures in (False, True):
                kills = kills_for(seed, args.ranks, args.kills, args.steps, args.checkpoint_every) if failures else []
                arm = "failures" if failures else "uninterrupted"
                if mode == "trainer":
                    run_dir = Path(args.out) / f"seed{seed}-{arm}"
                    line = job_line(args, seed, kills, run_dir)
                else:
                    run_dir = Path(args.out) / f"replacements-seed{seed}-{arm}"
                    line = replacement_line(args, seed, kills, run_dir)
                job, _ = provenance.run_job(line, run_dir, code, args.timeout, "elastic_failures.py",
                                            f"{mode}, seed {seed}, {len(kills)} kill(s)")
                rows.append(row(seed, kills, run_dir, job) if mode == "trainer" else
                            replacement_row(seed, kills, run_dir, job))
    return rows


def replacement_row(seed: int, kills: list, run_dir: Path, job: dict) -> dict:
    result = json.loads((run_dir / "result.json").read_text())
    return {"mode": "replacements", "seed": seed, "failures": bool(kills),
            "kills": [[r, "step", s] for r, _, s in kills], "command": job["command"],
            "final_step": result["final_step"], "test_acc": result["test_acc"],
            "curve": [[s, a] for s, a, _ in result["curve"]], "wall_s": result["wall_s"],
            "changes": [{"kind": c["kind"], "step": c["step"], "workers_after": c["workers_after"],
                         "recovered_s": c["seconds"]} for c in result["changes"]]}


def row(seed: int, kills: list, run_dir: Path, job: dict) -> dict:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in lines if "test_acc" in r]
    changes = [r for r in lines if r.get("event") == "membership"]
    return {"mode": "trainer", "seed": seed, "failures": bool(kills), "kills": [list(k) for k in kills],
            "command": job["command"],
            "final_step": evals[-1]["step"], "test_acc": evals[-1]["test_acc"], "test_loss": evals[-1]["test_loss"],
            "curve": [[r["step"], r["test_acc"]] for r in evals], "wall_s": evals[-1]["wall_s"],
            "changes": [{"kind": "MembershipChange", **{k: c[k] for k in (
                "step", "lost_ranks", "workers_before", "workers_after", "topology", "recovered_s")}}
                for c in changes]}


def summarize(rows: list) -> dict:
    out = {}
    for failures in (False, True):
        acc = [r["test_acc"] for r in rows if r["failures"] == failures]
        out["failures" if failures else "uninterrupted"] = {
            "runs": len(acc), "test_acc_mean": statistics.mean(acc),
            "test_acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0, "test_acc": acc}
    lost = [c["recovered_s"] for r in rows for c in r["changes"] if c.get("kind", "MembershipChange") == "MembershipChange"]
    joined = [c["recovered_s"] for r in rows for c in r["changes"] if c.get("kind") == "MembershipJoin"]
    out["recovered_s_max"] = max(lost) if lost else None
    out["changes"] = len(lost)
    out["joins"], out["join_s_max"] = len(joined), (max(joined) if joined else None)
    return out


def verdict(summary: dict, rows: list) -> list:
    u, f = summary["uninterrupted"], summary["failures"]
    gap = f["test_acc_mean"] - u["test_acc_mean"]
    spread = max(u["test_acc_std"], f["test_acc_std"])
    every = all(r["final_step"] == rows[0]["final_step"] for r in rows)
    lines = [f"Every run {'reached' if every else 'did NOT all reach'} its last step; the {summary['changes']} "
             f"losses were each recovered within {summary['recovered_s_max']:.2f} s of the failed step's start."
             if summary["recovered_s_max"] is not None else "No rank was lost."]
    bad = [r for r in rows if r.get("status")]
    if bad:
        lines.append(f"{len(bad)} of {len(rows)} runs ended with a non-zero exit status although they reached their "
                     f"last step (the note below the table).")
    if summary["joins"]:
        lines.append(f"{summary['joins']} joins brought replacements in (a join takes every process started after "
                     f"one loss, one per lost rank), each within {summary['join_s_max']:.1f} s of its spawn (mostly "
                     f"the new processes' start-up), and the runs ended with every rank back.")
    if u["runs"] > 1:
        size = "within" if abs(gap) <= 2 * spread else "outside"
        lines.append(f"Final test accuracy: {f['test_acc_mean']:.4f} ± {f['test_acc_std']:.4f} with failures against "
                     f"{u['test_acc_mean']:.4f} ± {u['test_acc_std']:.4f} uninterrupted (mean ± standard deviation "
                     f"over {u['runs']} seeds): a difference of {gap:+.4f}, {size} twice the larger spread.")
    else:
        lines.append(f"Final test accuracy: {f['test_acc_mean']:.4f} with failures, {u['test_acc_mean']:.4f} "
                     f"uninterrupted (one seed: no spread).")
    return lines


def plot(by_mode: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(by_mode), figsize=(6.5 * len(by_mode), 4), squeeze=False)
    for ax, (mode, rows) in zip(axes[0], by_mode.items()):
        for failures, color in ((False, "tab:blue"), (True, "tab:red")):
            group = [r for r in rows if r["failures"] == failures]
            # the steps every run evaluated at (a replacement that ends as rank 0 has only its own)
            steps = sorted(set.intersection(*({s for s, _ in r["curve"]} for r in group)))
            values = [[dict(map(tuple, r["curve"]))[s] for s in steps] for r in group]
            ax.plot(steps, [statistics.mean(v) for v in zip(*values)], color=color,
                    label="with failures" if failures else "uninterrupted")
            ax.fill_between(steps, [min(v) for v in zip(*values)], [max(v) for v in zip(*values)], color=color,
                            alpha=0.2)
        for r in rows:
            for c in r["changes"]:
                ax.axvline(c["step"], color="tab:red" if c.get("kind", "MembershipChange") == "MembershipChange"
                           else "tab:green", alpha=0.25, lw=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel("test accuracy of the average model")
        ax.set_title(MODE_TITLES[mode], fontsize=9)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


MODE_TITLES = {"trainer": "python -m dsgd.train --elastic true (shrinks)\nred lines: lost ranks",
               "replacements": "examples/elastic_training.py --replace\nred: lost ranks, green: replacements joined"}


def table(rows: list, workers: int) -> list:
    out = ["| seed | run | kills (rank@step) | workers at the end | final test acc | wall s |", "|---|---|---|---|---|---|"]
    for r in rows:
        kills = ", ".join(f"{k[0]}@{'checkpoint:' if k[1] == 'checkpoint' else ''}{k[2]}" for k in r["kills"]) or "none"
        end = r["changes"][-1]["workers_after"] if r["changes"] else workers
        arm = ("failures" if r["failures"] else "uninterrupted") + (f" (exit status {r['status']}, below)"
                                                                    if r.get("status") else "")
        out.append(f"| {r['seed']} | {arm} | {kills} | {end} | {r['test_acc']:.4f} | {r['wall_s']:.0f} |")
    return out


def merge(saved: dict, rows: list, meta: dict) -> tuple:
    """This invocation's ROWS and META after an earlier one's SAVED runs.json: the earlier rows of the
    modes not run again stay, and so do the provenance records of the invocations they came from."""
    kept = [r for r in saved["rows"] if r.get("mode", "trainer") not in meta_modes(meta)]
    if not kept:
        return rows, meta
    kept_modes = {r.get("mode", "trainer") for r in kept}
    earlier = [m for m in [saved["meta"], *saved["meta"].get("earlier", [])] if kept_modes & set(meta_modes(m))]
    return kept + rows, {**meta, "earlier": [{k: v for k, v in m.items() if k != "earlier"} for m in earlier]}


def meta_modes(meta: dict) -> list:
    """The modes an invocation ran: recorded, or read back from its command line."""
    if "modes" in meta:
        return meta["modes"]
    words = meta.get("command", "").split()
    if "--modes" not in words:
        return list(MODES)
    return [w for w in words[words.index("--modes") + 1:] if w in MODES]


def load_text(meta: dict) -> str:
    load = meta["machine"].get("load_average_at_start")
    return f"load average {load[0]:g} when it started" if load else "load average not recorded, heavy (other work ran)"


def report(args, rows: list, meta: dict) -> None:
    to = Path(args.to or args.out)
    to.mkdir(parents=True, exist_ok=True)
    by_mode = {}
    for r in rows:
        by_mode.setdefault(r.get("mode", "trainer"), []).append(r)
    summaries = {mode: summarize(group) for mode, group in by_mode.items()}
    (to / "results.json").write_text(json.dumps({"meta": meta, "summary": summaries, "runs": rows}, indent=1) + "\n")
    plot(by_mode, to / "accuracy.png")
    text = [f"# Training through lost ranks: {meta['ranks']} ranks, {meta['kills']} killed per run", "",
            "Question: what does losing workers in the middle of a run cost in final accuracy, when the survivors go "
            "on without a restart, and when new processes take the lost ranks' places?", "",
            f"{provenance.provenance_line(meta)}, on `{meta['cpu_model']}` ({meta['machine']['cpus']} cores shared by "
            f"all ranks; {load_text(meta)}, so the wall times below are not speeds). Fashion-MNIST, the small CNN, D-SGD on a ring with momentum, "
            f"{meta['ranks']} ranks x {meta['workers_per_rank']} worker(s), {rows[0]['final_step']} steps; ranks to "
            f"kill and their steps drawn from each seed. Both arms of a mode run the same program in elastic mode, so "
            f"they differ only in the failures."]
    for earlier in meta.get("earlier", []):   # the other mode's runs came from an earlier invocation
        text += ["", f"Earlier runs in this report: {provenance.provenance_line(earlier)}, {load_text(earlier)}."]
    if meta.get("note"):
        text += ["", f"Note on these runs: {meta['note']}."]
    printed = []
    for mode, group in by_mode.items():
        lines = verdict(summaries[mode], group)
        heading = ("## The trainer: the world shrinks" if mode == "trainer" else
                   "## Your own loop with replacements: the world grows back")
        what = ("`python -m dsgd.train --elastic true --lost-data reassign`; the last kill of each run comes while a "
                "checkpoint is written." if mode == "trainer" else
                "`examples/elastic_training.py --replace`: after each loss the survivors start a new process, which "
                "joins with its neighbour's state; the training set is split again over the workers at every change.")
        cmd = next(r["command"] for r in group if r["failures"])
        notes = [f"Seed {r['seed']}, {'failures' if r['failures'] else 'uninterrupted'}: {r['note']}."
                 for r in group if r.get("note")]
        text += ["", heading, "", what, "One failure run's command:", "", "```bash", cmd, "```", "",
                 *table(group, meta["workers"]), "", *lines, *([""] + notes if notes else [])]
        printed += [heading, *table(group, meta["workers"]), *lines, ""]
    text += ["", "![accuracy](accuracy.png)", "",
             "Kills are SIGKILLs a rank sends itself (`DSGD_FAULT` in the trainer, `--kill` in the example; "
             "docs/elastic.md)."]
    (to / "README.md").write_text("\n".join(text) + "\n")
    print("\n".join(printed))
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
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--quick", action="store_true", help="the trainer, 2 ranks x 2 workers, one kill, 24 steps, one seed")
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
            "workers": args.ranks * args.workers_per_rank, "modes": list(args.modes)}
    runs = Path(args.out) / "runs.json"
    if args.part in ("run", "all"):
        t0 = time.time()
        rows = run(args)
        meta["wall_s"] = time.time() - t0
        runs.parent.mkdir(parents=True, exist_ok=True)
        if runs.is_file():   # rows of the other mode, from an earlier run of the script, stay
            rows, meta = merge(json.loads(runs.read_text()), rows, meta)
        runs.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    else:
        if not runs.is_file():
            ap.error(f"no runs to report on: {runs} does not exist; run `run` (or `all`) first, with the same --out")
        saved = json.loads(runs.read_text())
        rows, meta = saved["rows"], {**saved["meta"], "report_command": command}
    if args.part in ("report", "all"):
        report(args, rows, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Re-test four claims of the seed papers at Fashion-MNIST / small-CNN scale, several seeds per arm.

    python experiments/reproduce.py CLAIM [--seeds 0 1 2] [--steps 160] [--out DIR] [--to DIR] [--quick]
    python experiments/reproduce.py all --seeds 0 1 2 --to docs/reproductions

CLAIM is one of postlocal, small-lr, qsr, dsgd-vs-csgd, or all. Every arm is one real
`mpirun -np 2 python -m mpi4py -m dsgd.train` job per seed with 2 ranks x 4 virtual workers
(n = 8, local batch 64, total batch 512). Arms shared by several claims (the C-SGD baseline with
step decay, the post-local arms) are trained once per seed. OUT (default runs/reproduce, with
--quick runs/reproduce-quick) gets the trainer run directories, OUT/ARM/seedS; a run directory is
kept only when its job.json records the same command at the same clean commit
(experiments/provenance.py), so adding a seed trains only the new runs, and anything else trains
again.

TO (default: OUT; the committed reports are --to docs/reproductions) gets CLAIM.md and CLAIM.json
per claim and a README.md summary of every claim found in TO. --quick also writes quick.json, the
numbers CI compares a rerun against exactly; with --quick, TO gets that file only (the committed
one: docs/reproductions/quick.json).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dsgd import launcher  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provenance  # noqa: E402
from provenance import machine, rel  # noqa: E402

RANKS, WORKERS_PER_RANK, LOCAL_BATCH = 2, 4, 64
N_WORKERS = RANKS * WORKERS_PER_RANK
PEAK_LR = 0.2       # no momentum, as in Gu et al.; decays to 0.02 with gamma 0.1
QSR_ALPHA = 0.06    # H = max(2, floor((0.06 / lr)^2)): 2 while lr > 0.035, grows as cosine decay drops lr
COMMON = ["--dataset", "fashion-mnist", "--model", "cnn", "--norm", "none", "--batch-size", str(LOCAL_BATCH),
          "--momentum", "0", "--lr", str(PEAK_LR), "--workers-per-rank", str(WORKERS_PER_RANK)]
EPOCHS = 2         # each run is 2 epochs of steps / 2 steps; the decay and the switch sit at epoch 1, mid-run
STEP_DECAY = ["--decay", "step", "--milestones", "1", "--gamma", "0.1"]
QUICK_THREADS = 1  # threads per rank in --quick: its numbers must not depend on the machine's core count

# Every arm any claim uses. `degree`: model copies a worker sends per communication round
# (1 for an allreduce of parameters or gradients, 2 for a ring gossip round).
ARMS = {
    "csgd-step": {"label": "C-SGD, step decay at 1/2", "degree": 1,
                  "flags": ["--algorithm", "csgd", *STEP_DECAY]},
    "postlocal-h8-step": {"label": "post-local SGD H=8 from the decay", "degree": 1,
                          "flags": ["--algorithm", "postlocal", "--local-steps", "8", *STEP_DECAY]},
    "csgd-const": {"label": "C-SGD, constant lr 0.2", "degree": 1,
                   "flags": ["--algorithm", "csgd", "--decay", "constant"]},
    "postlocal-h8-const": {"label": "post-local SGD H=8 from 1/2, constant lr 0.2", "degree": 1,
                           "flags": ["--algorithm", "postlocal", "--local-steps", "8", "--decay", "constant",
                                     "--switch-epochs", "1"]},
    "local-h2-cos": {"label": "local SGD H=2, cosine decay", "degree": 1,
                     "flags": ["--algorithm", "local", "--local-steps", "2", "--decay", "cosine"]},
    "qsr-cos": {"label": f"QSR H_base=2 alpha={QSR_ALPHA}, cosine decay", "degree": 1,
                "flags": ["--algorithm", "qsr", "--local-steps", "2", "--qsr-alpha", str(QSR_ALPHA),
                          "--decay", "cosine"]},
    "ring-step": {"label": "D-SGD ring (ATC), step decay at 1/2", "degree": 2,
                  "flags": ["--algorithm", "dsgd", "--topology", "ring", *STEP_DECAY]},
}

CLAIMS = {
    "postlocal": {
        "title": "Post-local SGD vs parallel SGD after the learning-rate decay",
        "source": "Lin et al. (ICLR 2020), Gu et al. (ICLR 2023)",
        "claim": "At large total batch, switching from parallel SGD to local SGD (H > 1) at the first "
                 "learning-rate decay gives higher final test accuracy than staying with parallel SGD.",
        "arms": ["csgd-step", "postlocal-h8-step"],
    },
    "small-lr": {
        "title": "Local SGD helps only with a small learning rate",
        "source": "Gu et al. (ICLR 2023)",
        "claim": "The generalization benefit of local SGD over parallel SGD appears when the learning rate is "
                 "small (here: after a x0.1 decay) and training continues long enough; at a large learning "
                 "rate the same switch to H=8 does not help.",
        "arms": ["csgd-const", "postlocal-h8-const", "csgd-step", "postlocal-h8-step"],
    },
    "qsr": {
        "title": "QSR matches a small constant H with fewer synchronizations",
        "source": "Gu et al. (ICLR 2024)",
        "claim": "With the quadratic synchronization rule H = max(H_base, floor((alpha/lr)^2)) the final test "
                 "accuracy is at least that of local SGD with the constant H_base, with fewer "
                 "synchronizations.",
        "arms": ["local-h2-cos", "qsr-cos"],
        "note": "With alpha = 0.06, H exceeds 2 only once the cosine-decayed lr drops below 0.035, in the last "
                "~27% of the run, so QSR can save synchronizations only there and its trajectory matches H = 2 "
                "before that: the saving is bounded by the schedule, not measured against a tuned alternative.",
    },
    "dsgd-vs-csgd": {
        "title": "D-SGD on a ring vs C-SGD at large total batch",
        "source": "Zhu et al. (ICML 2023)",
        "claim": "At large total batch, decentralized SGD on a ring generalizes better (higher final test "
                 "accuracy) than centralized SGD with the same total batch and schedule.",
        "arms": ["csgd-step", "ring-step"],
    },
}


def model_bytes() -> int:
    """Bytes of one copy of the model the arms train (the payload of one exact average)."""
    from dsgd.models import build_model
    m = build_model("cnn", 1, 10, 28, norm="none")
    return sum(t.numel() * t.element_size() for t in [*m.parameters(), *m.buffers()])


def trainer_args(arm: str, seed: int, args, run_dir: Path) -> list[str]:
    return ["-m", "dsgd.train", *COMMON, *ARMS[arm]["flags"], "--steps-per-epoch", str(args.steps // EPOCHS),
            "--epochs", str(EPOCHS), "--seed", str(seed), "--eval-every", str(args.eval_every),
            "--log-every", str(args.eval_every), "--eval-samples", str(args.eval_samples), "--out", str(run_dir)]


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_arm(arm: str, seed: int, args, m_bytes: int, code: str) -> dict:
    """Train one arm with one seed (or keep the run of the same command at the same commit) and summarize it."""
    run_dir = Path(args.out) / arm / f"seed{seed}"
    cmd = trainer_args(arm, seed, args, Path(rel(run_dir)))
    line = launcher.mpirun_command(RANKS, cmd, provenance.python(), threads=args.threads)
    job, kept = provenance.run_job(line, run_dir, code, args.timeout, "reproduce", f"{arm} seed {seed}")
    rows = read_metrics(run_dir)
    if not rows or rows[-1]["step"] != args.steps:
        sys.exit(f"reproduce: {arm} seed {seed} stopped before step {args.steps}; see {rel(run_dir)}")
    last = rows[-1]
    rounds = last["bytes_sent"] / (m_bytes * ARMS[arm]["degree"])
    print(f"   final test acc {last['test_acc']:.4f}, {rounds:.0f} communication rounds, "
          f"{job['job_wall_s']:.0f} s", flush=True)
    return {"arm": arm, "seed": seed, "final_test_acc": last["test_acc"], "best_test_acc": max(r["test_acc"] for r in rows),
            "final_train_loss": last["train_loss"], "rounds": rounds, "bytes_sent_per_worker": last["bytes_sent"],
            "mb_sent_per_worker": last["bytes_sent"] / 1e6,
            "steps": [r["step"] for r in rows], "test_acc": [r["test_acc"] for r in rows],
            "lr": [r["lr"] for r in rows], "local_steps": [r["local_steps"] for r in rows],
            "job_wall_s": job["job_wall_s"], "trainer_wall_s": last["wall_s"], "kept": kept, "commit": job["commit"],
            "job_date": job["date"], "run_dir": rel(run_dir), "command": job["command"]}


def quick_metrics(runs: list[dict]) -> dict:
    """The numbers a rerun of --quick must reproduce exactly, per arm and seed."""
    return {f"{r['arm']}/seed{r['seed']}": {k: r[k] for k in ("steps", "test_acc", "lr", "local_steps",
                                                                "final_train_loss", "bytes_sent_per_worker")}
            for r in runs}


def summarize(runs: list[dict]) -> dict:
    acc = [r["final_test_acc"] for r in runs]
    return {"seeds": [r["seed"] for r in runs], "final_test_acc": acc, "mean": statistics.fmean(acc),
            "std": statistics.stdev(acc) if len(acc) > 1 else 0.0, "min": min(acc), "max": max(acc),
            "rounds": statistics.fmean(r["rounds"] for r in runs),
            "mb_sent_per_worker": statistics.fmean(r["mb_sent_per_worker"] for r in runs)}


def compare(stats: dict, better: str, base: str) -> tuple[float, float, str]:
    """Mean gain of BETTER over BASE, the noise scale (larger of the two seed stds), and a word for it."""
    gain = stats[better]["mean"] - stats[base]["mean"]
    noise = max(stats[better]["std"], stats[base]["std"])
    n = min(len(stats[better]["seeds"]), len(stats[base]["seeds"]))
    # Same seed, same initialization and data order: the per-seed difference is the paired comparison.
    acc = {arm: dict(zip(stats[arm]["seeds"], stats[arm]["final_test_acc"])) for arm in (better, base)}
    paired = ", ".join(f"{100 * (acc[better][s] - acc[base][s]):+.2f}" for s in acc[better] if s in acc[base])
    paired = f"; per-seed paired differences {paired} pp"
    if n < 2:
        return gain, noise, "one seed, no spread" + paired
    if gain > noise and stats[better]["min"] > stats[base]["max"]:
        return gain, noise, "higher beyond the seed spread" + paired
    if gain > noise:
        return gain, noise, "higher on average, ranges overlap" + paired
    if gain < -noise:
        return gain, noise, "lower beyond the seed spread" + paired
    return gain, noise, "within the seed spread" + paired


def verdict(claim: str, stats: dict) -> str:
    """One line: REPRODUCED / NOT REPRODUCED / INCONCLUSIVE (one seed), and the numbers behind it."""
    text = _verdict(claim, stats)
    if min(len(s["seeds"]) for s in stats.values()) < 2:
        text = "INCONCLUSIVE (one seed, no spread to compare with): " + text.split(": ", 1)[1]
    return text


def _verdict(claim: str, stats: dict) -> str:
    pp = lambda x: f"{100 * x:+.2f} pp"  # noqa: E731
    if claim == "postlocal":
        g, s, word = compare(stats, "postlocal-h8-step", "csgd-step")
        ok = "REPRODUCED" if word.startswith("higher beyond the seed spread") else "NOT REPRODUCED"
        return f"{ok}: post-local H=8 minus C-SGD = {pp(g)} (largest seed std {100 * s:.2f} pp; {word})."
    if claim == "small-lr":
        g_small, s_small, w_small = compare(stats, "postlocal-h8-step", "csgd-step")
        g_large, s_large, w_large = compare(stats, "postlocal-h8-const", "csgd-const")
        helps_small = w_small.startswith("higher beyond the seed spread")
        helps_large = g_large > s_large
        ok = "REPRODUCED" if helps_small and not helps_large else "NOT REPRODUCED"
        return (f"{ok}: gain of local H=8 over C-SGD after the decay to lr 0.02 = {pp(g_small)} ({w_small}); "
                f"at constant lr 0.2 = {pp(g_large)} ({w_large}).")
    if claim == "qsr":
        g, s, word = compare(stats, "qsr-cos", "local-h2-cos")
        fewer = stats["qsr-cos"]["rounds"] < stats["local-h2-cos"]["rounds"]
        ok = "REPRODUCED" if fewer and g >= -s else "NOT REPRODUCED"
        return (f"{ok}: QSR synchronized {stats['qsr-cos']['rounds']:.0f} times vs {stats['local-h2-cos']['rounds']:.0f} "
                f"for H=2; accuracy QSR minus H=2 = {pp(g)} (largest seed std {100 * s:.2f} pp; {word}).")
    if claim == "dsgd-vs-csgd":
        g, s, word = compare(stats, "ring-step", "csgd-step")
        ok = "REPRODUCED" if word.startswith("higher beyond the seed spread") else "NOT REPRODUCED"
        return f"{ok}: D-SGD ring minus C-SGD = {pp(g)} (largest seed std {100 * s:.2f} pp; {word})."
    raise ValueError(claim)


def write_claim_markdown(path: Path, res: dict) -> None:
    meta, c = res["meta"], CLAIMS[res["claim"]]
    m = meta["machine"]
    lines = [f"# {c['title']}", "", f"Source: {c['source']}.", "", f"Claim: {c['claim']}", "",
             "## Setup", "", meta["setup"], "",
             f"{provenance.provenance_line(meta)}, host {m['host']} ({m['cpus']} CPUs, "
             f"{m['platform']}, Python {m['python']}, torch {m['torch']}; load average {m['load_average_at_start']} "
             f"at start, {m['load_average_at_end']} at the end"
             + ("; every run was kept from an earlier invocation of the same command at the same commit, so this "
                "load is not the one the runs saw" if all(r["kept"] for r in res["runs"]) else "")
             + f"). The {len(res['runs'])} runs took "
             f"{sum(r['trainer_wall_s'] for r in res['runs']):.0f} s of trainer wall time together (start-up of "
             "each mpirun job not included); runs shared with other claims were trained once.", "",
             "## Results", "",
             "| arm | seeds | mean test acc | std | min | max | communication rounds | MB sent / worker |",
             "|---|---|---|---|---|---|---|---|"]
    for arm in c["arms"]:
        s = res["stats"][arm]
        lines.append(f"| {ARMS[arm]['label']} (`{arm}`) | {', '.join(map(str, s['seeds']))} | {s['mean']:.4f} | "
                     f"{s['std']:.4f} | {s['min']:.4f} | {s['max']:.4f} | {s['rounds']:.0f} | "
                     f"{s['mb_sent_per_worker']:.1f} |")
    lines += ["", "Test accuracy of the averaged model on the first "
              f"{meta['eval_samples'] or 'all'} test images after the last step; std is the sample standard "
              "deviation over seeds. Communication rounds = bytes each worker sent / (model bytes x copies per "
              f"round), with model bytes {meta['model_bytes']:,} and one copy per exact average (C-SGD's "
              "gradient allreduce, a local-SGD average) or two per ring gossip round.", "",
              "Per-seed final test accuracy:", ""]
    for arm in c["arms"]:
        s = res["stats"][arm]
        lines.append(f"- `{arm}`: " + ", ".join(f"seed {sd}: {a:.4f}" for sd, a in zip(s["seeds"], s["final_test_acc"])))
    lines += ["", "## Verdict", "", res["verdict"], "", *([c["note"], ""] if "note" in c else []), res["scale_note"], "", "## Commands", "",
              "Launched through `dsgd.launcher`: each line is exactly the command that ran, from the repository "
              "root.", "", "```"]
    lines += [r["command"] for r in res["runs"]] + ["```", ""]
    path.write_text("\n".join(lines))


def write_summary(out: Path) -> None:
    """README.md: one row per claim whose CLAIM.json is in OUT."""
    lines = ["# Reproductions of the seed papers' claims at Fashion-MNIST scale", "",
             "Each claim was re-tested with `experiments/reproduce.py` (see `experiments/README.md`): small CNN "
             "without normalization on Fashion-MNIST, 8 workers (2 MPI ranks x 4), local batch 64, total batch "
             "512, plain SGD, several seeds per arm. Details, per-seed numbers and exact commands in each file.", "",
             "| claim | paper | arms (mean +- std test acc, seeds) | verdict | produced at commit, date |",
             "|---|---|---|---|---|"]
    for claim in CLAIMS:
        path = out / f"{claim}.json"
        if not path.exists():
            continue
        res = json.loads(path.read_text())
        arms = "; ".join(f"{a}: {s['mean']:.4f} +- {s['std']:.4f} ({len(s['seeds'])})" for a, s in res["stats"].items())
        m = res["meta"]
        lines.append(f"| [{claim}]({claim}.md) | {CLAIMS[claim]['source']} | {arms} | {res['verdict']} | "
                     f"`{m.get('commit') or 'not recorded'}`, {m['date']} |")
    lines += ["", SCALE_NOTE, ""]
    (out / "README.md").write_text("\n".join(lines))


SCALE_NOTE = ("Scale caveat: the papers train ResNets on CIFAR-10/ImageNet for hundreds of epochs; these runs are "
              "160 steps (about 1.4 passes over Fashion-MNIST) of a small CNN on 2 shared CPU cores, so the long "
              "post-decay phase the claims rely on is short, and a 'not reproduced' here says the effect does not "
              "show at this scale, not that the claim is false.")


def run_claim(claim: str, args, m_bytes: int, cache: dict, code: str) -> dict:
    origin = provenance.produced_by(args.command, code)
    mach, t0 = machine(), time.time()
    runs = []
    for arm in CLAIMS[claim]["arms"]:
        for seed in args.seeds:
            if (arm, seed) not in cache:
                cache[arm, seed] = run_arm(arm, seed, args, m_bytes, code)
            runs.append(cache[arm, seed])
    stats = {arm: summarize([r for r in runs if r["arm"] == arm]) for arm in CLAIMS[claim]["arms"]}
    mach["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    setup = (f"Fashion-MNIST, `--model cnn --norm none`, {N_WORKERS} workers ({RANKS} MPI ranks x "
             f"{WORKERS_PER_RANK} virtual workers), local batch {LOCAL_BATCH} (total {N_WORKERS * LOCAL_BATCH}), "
             f"plain SGD (momentum 0, no weight decay), peak lr {PEAK_LR} (not scaled), {args.steps} steps "
             f"(= {args.steps * N_WORKERS * LOCAL_BATCH:,} samples: {EPOCHS} epochs of {args.steps // EPOCHS} steps, "
             f"each a fresh shuffle split into disjoint shards), evaluation every {args.eval_every} steps on {args.eval_samples or 'all'} test images. "
             "Step decay: x0.1 at half of the run; post-local SGD switches there. Cosine decay: from the peak to 0 "
             f"over the run. QSR: H = max(2, floor(({QSR_ALPHA}/lr)^2)), at most the steps left. "
             f"Seeds {', '.join(map(str, args.seeds))} (the seed sets initialization and data order).")
    meta = {**origin, "machine": mach, "setup": setup, "model_bytes": m_bytes, "threads": args.threads,
            "eval_samples": args.eval_samples, "steps": args.steps, "quick": args.quick,
            "total_wall_s": time.time() - t0}
    return {"claim": claim, "meta": meta, "stats": stats, "verdict": verdict(claim, stats),
            "scale_note": SCALE_NOTE, "runs": runs}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("claim", choices=[*CLAIMS, "all"], help="which claim to re-test")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds per arm")
    ap.add_argument("--steps", type=int, default=160, help="training steps per job (2 epochs of steps / 2)")
    ap.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: steps / 4)")
    ap.add_argument("--eval-samples", type=int, default=5000, help="test images per evaluation (0: all 10,000)")
    ap.add_argument("--out", help="trainer run directories, OUT/ARM/seedS (and the reports, without --to); "
                                  "default runs/reproduce, with --quick runs/reproduce-quick")
    ap.add_argument("--to", help="where CLAIM.md/.json and README.md go (default: --out); with --quick, only quick.json")
    ap.add_argument("--threads", type=int, default=None,
                    help=f"threads per rank (default: the launch policy's, from the cores; --quick: {QUICK_THREADS})")
    ap.add_argument("--timeout", type=float, default=900, help="seconds before one job is killed")
    ap.add_argument("--quick", action="store_true", help="smoke test: seed 0, 8 steps per arm, 500 test images")
    args = ap.parse_args(argv)
    args.out = args.out or str(REPO / "runs" / ("reproduce-quick" if args.quick else "reproduce"))
    if args.quick:
        args.seeds, args.steps, args.eval_every, args.eval_samples = [args.seeds[0]], 8, 4, 500
        args.threads = args.threads or QUICK_THREADS
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be at least 1, got {args.threads}")
    args.eval_every = args.eval_every or max(1, args.steps // 4)
    if args.steps % EPOCHS or args.steps // EPOCHS * N_WORKERS * LOCAL_BATCH > 60000:
        ap.error(f"--steps must be even and --steps / {EPOCHS} x {N_WORKERS} workers x batch {LOCAL_BATCH} must fit "
                 "one epoch of Fashion-MNIST (60,000): at most 234")
    args.out = str(Path(args.out).resolve())
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.command = provenance.script_command("reproduce.py", sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    to = out if args.quick or not args.to else Path(args.to).resolve()
    to.mkdir(parents=True, exist_ok=True)
    m_bytes, cache, code = model_bytes(), {}, provenance.commit()
    for claim in (CLAIMS if args.claim == "all" else [args.claim]):
        res = run_claim(claim, args, m_bytes, cache, code)
        (to / f"{claim}.json").write_text(json.dumps(res, indent=1))
        write_claim_markdown(to / f"{claim}.md", res)
        print(f"{claim}: {res['verdict']}", flush=True)
    write_summary(to)
    print((to / "README.md").read_text())
    if args.quick:
        origin = provenance.produced_by(args.command, code)
        for where in [out] + ([Path(args.to)] if args.to else []):
            provenance.write_reference(where / "quick.json", origin, quick_metrics(list(cache.values())))
            print(f"quick.json in {rel(where)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

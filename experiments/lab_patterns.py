"""Communication patterns on the lab: step time, time to accuracy, the cost model, stragglers and
compressed steps, on 4 namespace hosts x 1 rank at 100 Mbit/s and 1 Gbit/s.

    python experiments/lab_patterns.py run    [--rates 100mbit 1000mbit] [--seeds 0 1 2] [--steps 24]
                                              [--out runs/lab-patterns] [--quick]
    python experiments/lab_patterns.py report [--out runs/lab-patterns] [--to docs/lab-patterns]
    python experiments/lab_patterns.py all --to docs/lab-patterns
    python experiments/lab_patterns.py run --parts compress    (only that part again; the others' numbers kept)

Questions, one part each:
  train     which pattern reaches a target test accuracy first in wall time, and what does a step
            cost: C-SGD, local SGD (H = 8), D-SGD on ring / exponential / one-peer exponential,
            CHOCO with sign, PowerSGD C-SGD and DiLoCo, Fashion-MNIST with the small CNN, every
            seed of --seeds (one lab job per configuration, rate and seed)
  calibrate `dsgd.bench mix` (ring gossip and the allreduce at several sizes) under the lab, per
            rate: the points the cost model's alpha and beta are fitted to
  compress  `dsgd.bench compress` under the lab, per rate: the dense ring step against CHOCO's
            compressed step with sign and fp16, for a buffer of the CNN's size and an 11M-float one;
            plus one CNN training with CHOCO fp16 (the same settings as the train part, first seed)
  straggler C-SGD and D-SGD on a ring with one rank sleeping after its gradients every step
            (--straggler-delay, fixed, and uniform with the same mean), against the same job without

Each job is one `launch/dsgd-lab` job (4 hosts x 1 rank, every host link limited by tbf); its lab
JSON and output go into the job's run directory. Needs root (docs/lab.md). A job is rerun unless
its directory holds the same command at the same clean commit (experiments/provenance.py).
`--quick` runs every part once, small (one rate, one seed, a few steps), as a smoke test.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import provenance  # noqa: E402

HOSTS = 4
CNN_FLOATS = 421_642            # the small CNN's parameters on Fashion-MNIST (BatchNorm statistics aside)
BIG_FLOATS = 11_000_000         # the 11M-float buffer (ResNet-18)
TRAIN = ["--dataset", "fashion-mnist", "--model", "cnn", "--batch-size", "32", "--lr", "0.05", "--epochs", "1",
         "--bn-batches", "0", "--log-every", "1000"]  # BatchNorm statistics averaged, not re-estimated, at each evaluation
# name -> (slug, trainer flags, the cost model's algorithm for its exchange)
CONFIGS = {
    "C-SGD (allreduce)": ("csgd", ["--algorithm", "csgd"], "csgd"),
    "local SGD (H=8)": ("local8", ["--algorithm", "local", "--local-steps", "8"], "local:8"),
    "D-SGD ring": ("ring", ["--algorithm", "dsgd", "--topology", "ring"], "dsgd:ring"),
    "D-SGD exponential": ("exp", ["--algorithm", "dsgd", "--topology", "exponential"], "dsgd:exponential"),
    "D-SGD one-peer exp.": ("onepeer", ["--algorithm", "dsgd", "--topology", "one-peer-exponential"],
                            "dsgd:one-peer-exponential"),
    "CHOCO sign (ring)": ("choco-sign", ["--algorithm", "choco", "--topology", "ring", "--compress", "sign",
                                         "--consensus-step", "0.5"], "dsgd:ring"),
    "PowerSGD C-SGD (rank 2)": ("powersgd", ["--algorithm", "csgd", "--compress", "powersgd:rank=2"], "csgd"),
    "DiLoCo (H=8)": ("diloco", ["--algorithm", "diloco", "--local-steps", "8"], "local:8"),
}
FP16 = ("CHOCO fp16 (ring)", "choco-fp16", ["--algorithm", "choco", "--topology", "ring", "--compress", "fp16",
                                            "--consensus-step", "1"], "dsgd:ring")
STRAGGLER = {"C-SGD (allreduce)": "csgd", "D-SGD ring": "dsgd:ring"}
TARGETS = {"sign": 0.25, "fp16": 0.6}   # the ratios against the dense ring step at 100 Mbit/s
STRAGGLER_RANK = 1


def settings(args) -> dict:
    """Sizes of every part; --quick shrinks them to a smoke test."""
    if args.quick:
        return {"rates": args.rates[:1], "seeds": args.seeds[:1], "steps": 6, "eval_every": 3, "eval_samples": 100,
                "mix_numel": [65536, 262144], "mix_repeats": 2, "compress_numel": [CNN_FLOATS], "compress_repeats": 1,
                "straggler_steps": 6, "straggler_rate": args.rates[0]}
    return {"rates": args.rates, "seeds": args.seeds, "steps": args.steps, "eval_every": args.eval_every,
            "eval_samples": args.eval_samples, "mix_numel": [65536, 262144, 1048576, 2097152], "mix_repeats": 5,
            "compress_numel": [CNN_FLOATS, BIG_FLOATS], "compress_repeats": 3,
            "straggler_steps": args.straggler_steps, "straggler_rate": args.straggler_rate}


def lab(rate: str, out: str, command: list, timeout: float) -> list:
    return ["launch/dsgd-lab", "--hosts", str(HOSTS), "--rate", rate, "--timeout", str(int(timeout)),
            "--json", f"{out}/lab.json", "--", *command]


def train_line(rate, flags, seed, s, run_dir, timeout, steps=None, eval_every=None, extra=()) -> list:
    out = provenance.rel(run_dir)
    steps = steps or s["steps"]
    return lab(rate, out, ["python", "-m", "dsgd.train", *flags, *TRAIN, "--steps-per-epoch", str(steps),
                           "--eval-every", str(eval_every or s["eval_every"]), "--eval-samples", str(s["eval_samples"]),
                           "--seed", str(seed), *extra, "--out", out], timeout)


def run_cell(line: list, run_dir: Path, code: str, timeout: float, what: str) -> dict:
    """Run LINE from the repository root into RUN_DIR (its output into RUN_DIR/output.txt), or keep
    RUN_DIR when it holds the same command at the same clean commit. A failed job ends the script."""
    shown = shlex.join(line)
    job = provenance.kept_job(run_dir, shown, code)
    if job is not None:
        print(f"== {what}: same command at the same commit already ran, kept {provenance.rel(run_dir)}", flush=True)
        return job
    print(f"== {what}: {shown}", flush=True)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    t0 = time.time()
    try:  # the lab stops its job at --timeout itself; this one is the backstop
        res = subprocess.run(line, cwd=REPO, capture_output=True, text=True, timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        sys.exit(f"lab_patterns.py: {what} did not finish in {timeout + 60:g} s")
    (run_dir / "output.txt").write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        sys.exit(f"lab_patterns.py: {what} failed with status {res.returncode}:\n{(res.stdout + res.stderr)[-4000:]}")
    job = {"command": shown, "commit": code, "status": 0, "job_wall_s": time.time() - t0, "date": provenance.now()}
    (run_dir / "job.json").write_text(json.dumps(job, indent=1))
    return job


def bench_json(run_dir: Path, name: str) -> dict:
    """The JSON report a `dsgd.bench NAME --json` job printed."""
    for line in (run_dir / "output.txt").read_text().splitlines():
        if line.startswith("{") and f'"benchmark": "{name}"' in line:
            return json.loads(line)
    raise SystemExit(f"lab_patterns.py: no {name} report in {run_dir}/output.txt")


def train_row(name, rate, seed, run_dir, job, algorithm) -> dict:
    lab_doc = json.loads((run_dir / "lab.json").read_text())
    d = lab_doc["dsgd"]
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps = d["steps"]
    return {"config": name, "rate": rate, "seed": seed, "steps": steps, "cost_algorithm": algorithm,
            "command": job["command"], "job_wall_s": job["job_wall_s"],
            "step_ms": 1000 * d["wall_s_per_step"], "compute_ms": 1000 * d["compute_s_per_step"],
            "comm_ms": 1000 * d["comm_s_per_step"], "other_ms": 1000 * d["other_s_per_step"],
            "dsgd_bytes_per_step": d["bytes_sent_per_worker"] / steps,
            "kernel_mb_per_step": statistics.mean(h["sent_bytes"] for h in lab_doc["hosts"]) / steps / 1e6,
            "curve": [[r["step"], r["wall_s"], r["test_acc"]] for r in rows if r.get("test_acc") is not None]}


PARTS = ("calibrate", "compress", "straggler", "train")
PART_KEYS = {"calibrate": ("mix",), "compress": ("compress", "fp16"), "straggler": ("straggler",), "train": ("train",)}


def run(args, save, kept: dict | None = None) -> dict:
    """The jobs of every part in --parts, the short parts first; SAVE(result) after each job, so a run
    stopped early still leaves what it measured (`report` then says what is missing). The parts not
    asked for keep their numbers from KEPT, the result of an earlier run."""
    s, code, out = settings(args), provenance.commit(), Path(args.out)
    result = {"settings": s, "train": [], "fp16": [], "mix": {}, "compress": {}, "straggler": [], "complete": False}
    for part in PARTS:
        if part not in args.parts:
            for key in PART_KEYS[part]:
                result[key] = kept[key]
    seed = s["seeds"][0]
    for rate in s["rates"] if "calibrate" in args.parts else ():
        run_dir = out / "calibrate" / rate
        mix = ["python", "-m", "dsgd.bench", "mix", "--json", "--numel", *map(str, s["mix_numel"]),
               "--topology", "ring", "complete", "--repeats", str(s["mix_repeats"]), "--warmup", "1"]
        job = run_cell(lab(rate, provenance.rel(run_dir), mix, args.timeout), run_dir, code, args.timeout,
                       f"mixing benchmark at {rate}")
        result["mix"][rate] = {"command": job["command"], "report": bench_json(run_dir, "mix")}
        save(result)
    for rate in s["rates"] if "compress" in args.parts else ():
        run_dir = out / "compress" / rate
        comp = ["python", "-m", "dsgd.bench", "compress", "--json", "--numel", *map(str, s["compress_numel"]),
                "--codecs", "sign", "fp16", "--topology", "ring", "--repeats", str(s["compress_repeats"])]
        job = run_cell(lab(rate, provenance.rel(run_dir), comp, args.timeout), run_dir, code, args.timeout,
                       f"compression benchmark at {rate}")
        result["compress"][rate] = {"command": job["command"], "report": bench_json(run_dir, "compress")}
        save(result)
        name, slug, flags, algorithm = FP16
        run_dir = out / "train" / f"{rate}-{slug}-seed{seed}"
        job = run_cell(train_line(rate, flags, seed, s, run_dir, args.timeout), run_dir, code, args.timeout,
                       f"{name} at {rate}, seed {seed}")
        result["fp16"].append(train_row(name, rate, seed, run_dir, job, algorithm))
        save(result)
    rate, steps = s["straggler_rate"], s["straggler_steps"]
    arms = {"none": [], "fixed": ["--straggler-rank", str(STRAGGLER_RANK), "--straggler-delay", str(args.delay)],
            "random": ["--straggler-rank", str(STRAGGLER_RANK), "--straggler-delay", str(args.delay),
                       "--straggler-random", "true"]}
    for name, algorithm in (STRAGGLER if "straggler" in args.parts else {}).items():
        flags = CONFIGS[name][1]
        for arm, extra in arms.items():
            run_dir = out / "straggler" / f"{rate}-{CONFIGS[name][0]}-{arm}"
            line = train_line(rate, flags, seed, s, run_dir, args.timeout, steps=steps, eval_every=steps, extra=extra)
            job = run_cell(line, run_dir, code, args.timeout, f"{name} at {rate}, straggler {arm}")
            row = train_row(name, rate, seed, run_dir, job, algorithm)
            row.update({"arm": arm, "delay_s": 0.0 if arm == "none" else args.delay, "random": arm == "random"})
            result["straggler"].append(row)
            save(result)
    for seed in s["seeds"] if "train" in args.parts else ():  # seeds outermost: load drift hits every config alike
        for rate in s["rates"]:
            for name, (slug, flags, algorithm) in CONFIGS.items():
                run_dir = out / "train" / f"{rate}-{slug}-seed{seed}"
                job = run_cell(train_line(rate, flags, seed, s, run_dir, args.timeout), run_dir, code, args.timeout,
                               f"{name} at {rate}, seed {seed}")
                result["train"].append(train_row(name, rate, seed, run_dir, job, algorithm))
                save(result)
    result["complete"] = True
    return result


# ---------------------------------------------------------------------------------------------- analysis

def rate_bytes_per_s(rate: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(k|m|g)bit", rate)
    return float(m.group(1)) * {"k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)] / 8


def floor_s(point: dict, rate: str) -> float:
    """The least time a mixing step's bytes need on a host's link at RATE (a ring allreduce moves
    2 (p - 1) / p of the buffer through each link)."""
    share = 1.0 if point["kind"] == "sparse" else 2 * (HOSTS - 1) / HOSTS
    return share * point["bytes_sent_per_rank"] / rate_bytes_per_s(rate)


def fit_link(points: list, size: int) -> dict:
    """One alpha and beta for both kinds of mixing step, by relative least squares over every point:
    a ring step costs alpha + B / beta (B: bytes a rank sends, its concurrent messages sharing the link),
    an allreduce of M bytes 2 (p - 1) alpha + 2 (p - 1) / p * M / beta, the model's own formulas."""
    import numpy as np
    rows, y = [], []
    for p in points:
        if p["kind"] == "sparse":
            rows.append([1.0, p["bytes_sent_per_rank"]])
        else:
            rows.append([2.0 * (size - 1), 2.0 * (size - 1) / size * p["bytes_sent_per_rank"]])
        y.append(p["dsgd_s"])
    A, y = np.array(rows), np.array(y)
    (alpha, inv_beta), *_ = np.linalg.lstsq(A / y[:, None], np.ones_like(y), rcond=None)
    fitted = A @ [alpha, inv_beta]
    return {"alpha_s": float(max(alpha, 0.0)), "beta_bytes_per_s": float(1.0 / inv_beta),
            "points": [{**p, "fitted_s": float(f), "error": float((f - t) / t)} for p, f, t in zip(points, fitted, y)]}


def predict_comm_ms(algorithm: str, link: dict, message_bytes: float) -> float:
    from dsgd.cost import Cluster, Link, predict_step
    inter = Link(link["alpha_s"], link["beta_bytes_per_s"])
    cluster = Cluster(nodes=HOSTS, ranks_per_node=1, intra=inter, inter=inter)
    return 1000 * predict_step(algorithm, cluster, model_bytes=message_bytes, compute_s=0.0).comm_s


def message_bytes(algorithm: str, dsgd_bytes_per_step: float) -> float:
    """Bytes of one message (one model, or one compressed payload) from dsgd's own count per step:
    an allreduce counts one message per exchange, a gossip step one per out-neighbour."""
    from dsgd.cost import Cluster, Link, predict_step
    link = Link(0.0, 1.0)
    unit = predict_step(algorithm, Cluster(nodes=HOSTS, ranks_per_node=1, intra=link, inter=link), 1.0, 0.0)
    if "sparse" in unit.kinds:
        return dsgd_bytes_per_step / unit.bytes_sent_per_rank
    return dsgd_bytes_per_step * unit.period


def spread(values: list) -> dict:
    return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def time_to(curve: list, target: float):
    """Wall seconds at the first evaluation at or above TARGET, or None."""
    return next((w for _, w, acc in curve if acc >= target), None)


def choose_target(rows: list) -> float:
    """The highest of 0.60, 0.65, ... that every run reached (0.5 when one did not reach 0.6)."""
    best = min(max(a for _, _, a in r["curve"]) for r in rows)
    levels = [t / 100 for t in range(60, 96, 5) if t / 100 <= best + 1e-9]
    return levels[-1] if levels else 0.5


def analyse(res: dict, target_arg) -> dict:
    rates = res["settings"]["rates"]
    links = {}
    for rate in [r for r in rates if r in res["mix"]]:
        rep = res["mix"][rate]["report"]
        points = [{k: r[k] for k in ("kind", "numel", "dsgd_s", "raw_s", "bytes_sent_per_rank")} | {"topology": r.get("topology")}
                  for r in rep["results"] if r["kind"] in ("sparse", "average")]
        links[rate] = {"fitted": fit_link(points, rep["world_size"]),
                       "nominal": {"alpha_s": 50e-6, "beta_bytes_per_s": rate_bytes_per_s(rate)}}
    target = target_arg if target_arg is not None else choose_target(res["train"] or res["fp16"])
    summary = []
    for rate in rates:
        for name in [*CONFIGS, FP16[0]]:
            group = [r for r in res["train"] + res["fp16"] if r["rate"] == rate and r["config"] == name]
            if not group:
                continue
            s = {"rate": rate, "config": name, "seeds": len(group)}
            for key in ("step_ms", "compute_ms", "comm_ms", "other_ms", "dsgd_bytes_per_step", "kernel_mb_per_step"):
                s[key] = spread([r[key] for r in group])
            s["final_acc"] = spread([r["curve"][-1][2] for r in group])
            times = [time_to(r["curve"], target) for r in group]
            reached = [t for t in times if t is not None]
            s["time_to_target_s"] = spread(reached) if reached else None
            s["reached"] = f"{len(reached)}/{len(group)}"
            msg = message_bytes(group[0]["cost_algorithm"], s["dsgd_bytes_per_step"]["mean"])
            s["message_bytes"] = msg
            for which in ("nominal", "fitted"):  # nothing to price when nothing was sent (too few steps)
                priced = msg > 0 and rate in links
                pred = predict_comm_ms(group[0]["cost_algorithm"], links[rate][which], msg) if priced else None
                if pred is not None:  # each evaluation averages the model (one allreduce), counted in comm_s too
                    evals = len(group[0]["curve"]) / group[0]["steps"]
                    pred += evals * predict_comm_ms("csgd", links[rate][which], 4 * CNN_FLOATS)
                s[f"predicted_comm_ms_{which}"] = pred
                s[f"error_{which}"] = None if pred is None else (pred - s["comm_ms"]["mean"]) / s["comm_ms"]["mean"]
            summary.append(s)
    return {"target": target, "links": links, "summary": summary, "compressed": compressed(res, summary),
            "stragglers": stragglers(res, links)}


def compressed(res: dict, summary: list) -> list:
    """Ratios of the compressed step to the dense ring step: the CNN in training and the benchmark's buffers."""
    out = []
    for rate in res["settings"]["rates"]:
        cell = {s["config"]: s for s in summary if s["rate"] == rate}
        dense = cell.get("D-SGD ring")
        for codec, name in (("sign", "CHOCO sign (ring)"), ("fp16", FP16[0])):
            c = cell.get(name)
            if dense is None or c is None:
                continue
            out.append({"rate": rate, "codec": codec, "what": "CNN training (compute + comm per step)",
                        "numel": CNN_FLOATS, "step_ms": c["compute_ms"]["mean"] + c["comm_ms"]["mean"],
                        "dense_ms": dense["compute_ms"]["mean"] + dense["comm_ms"]["mean"],
                        "comm_ms": c["comm_ms"]["mean"], "dense_comm_ms": dense["comm_ms"]["mean"]})
        for r in res["compress"].get(rate, {"report": {"results": []}})["report"]["results"]:
            out.append({"rate": rate, "codec": r["codec"], "what": f"mixing benchmark, {r['numel']:,} floats",
                        "numel": r["numel"], "step_ms": 1000 * r["step_s"], "dense_ms": 1000 * r["dense_step_s"],
                        "encode_ms": 1000 * r["encode_s"], "decode_ms": 1000 * r["decode_s"],
                        "bytes_ratio": r["bytes_ratio"]})
    for o in out:
        o["ratio"] = o["step_ms"] / o["dense_ms"]
        if "comm_ms" in o:
            o["comm_ratio"] = o["comm_ms"] / o["dense_comm_ms"]
        o["target"] = TARGETS[o["codec"]]
        o["met"] = o["ratio"] <= o["target"]
    return out


def stragglers(res: dict, links: dict) -> list:
    from dsgd.cost import Cluster, Link, SlowRank, predict_step
    out = []
    for name, algorithm in STRAGGLER.items():
        rows = {r["arm"]: r for r in res["straggler"] if r["config"] == name}
        base = rows.get("none")
        for arm in ("fixed", "random"):
            r = rows.get(arm)
            if base is None or r is None or r["rate"] not in links:
                continue
            link = links[r["rate"]]["fitted"]
            inter = Link(link["alpha_s"], link["beta_bytes_per_s"])
            cluster = Cluster(nodes=HOSTS, ranks_per_node=1, intra=inter, inter=inter)
            msg = message_bytes(algorithm, base["dsgd_bytes_per_step"])
            compute = base["compute_ms"] / 1000
            plain = predict_step(algorithm, cluster, msg, compute, steps=r["steps"])
            slow = predict_step(algorithm, cluster, msg, compute, steps=r["steps"],
                                slow=SlowRank(STRAGGLER_RANK, r["delay_s"], random=r["random"], seed=0))
            # the measured wait: how much longer the others' step got (the slowed rank's own sleep is compute)
            out.append({"config": name, "arm": arm, "delay_ms": 1000 * r["delay_s"], "rate": r["rate"],
                        "step_ms": r["step_ms"], "base_step_ms": base["step_ms"],
                        "wait_ms": r["step_ms"] - base["step_ms"],
                        "comm_ms": r["comm_ms"], "base_comm_ms": base["comm_ms"],
                        "predicted_wait_ms": 1000 * (slow.step_s - plain.step_s)})
    return out


# ---------------------------------------------------------------------------------------------- report

def lscpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def plot(res: dict, a: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    rates = res["settings"]["rates"]
    fig, axes = plt.subplots(1, len(rates), figsize=(6.5 * len(rates), 4.5), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, rate in zip(axes[0], rates):
        for i, name in enumerate(CONFIGS):
            group = [r for r in res["train"] if r["rate"] == rate and r["config"] == name]
            if not group:
                continue
            n = min(len(r["curve"]) for r in group)
            wall = np.array([[p[1] for p in r["curve"][:n]] for r in group])
            acc = np.array([[p[2] for p in r["curve"][:n]] for r in group])
            w = wall.mean(axis=0)
            ax.plot(w, acc.mean(axis=0), color=colors(i), label=name, marker=".")
            ax.fill_between(w, acc.min(axis=0), acc.max(axis=0), color=colors(i), alpha=0.2)
        ax.axhline(a["target"], color="black", lw=0.8, ls="--")
        ax.set_title(f"{rate} per host, {HOSTS} hosts x 1 rank")
        ax.set_xlabel("wall time, s (mean over seeds)")
        ax.set_ylabel("test accuracy (band: min to max over seeds)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(s: dict, digits: int = 1) -> str:
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}" if s["n"] > 1 else f"{s['mean']:.{digits}f}"


def verdicts(res: dict, a: dict) -> dict:
    lines = {"train": [], "cost": [], "compress": [], "straggler": []}
    for rate in res["settings"]["rates"]:
        cells = [s for s in a["summary"] if s["rate"] == rate and s["config"] in CONFIGS]
        if not cells:
            continue
        fast = min(cells, key=lambda s: s["step_ms"]["mean"])
        slow = max(cells, key=lambda s: s["step_ms"]["mean"])
        reached = [s for s in cells if s["time_to_target_s"] is not None]
        missed = [s["config"] for s in cells if s["reached"] != f"{s['seeds']}/{s['seeds']}"]
        line = (f"At {rate}, the shortest step was {fast['config']}'s ({fast['step_ms']['mean']:.0f} ms, evaluation "
                f"included) and the longest {slow['config']}'s ({slow['step_ms']['mean']:.0f} ms).")
        if reached:
            first = min(reached, key=lambda s: s["time_to_target_s"]["mean"])
            last = max(reached, key=lambda s: s["time_to_target_s"]["mean"])
            line += (f" {first['config']} reached {a['target']:.2f} test accuracy first, after "
                     f"{fmt(first['time_to_target_s'])} s (mean ± sd over seeds), {last['config']} last, after "
                     f"{fmt(last['time_to_target_s'])} s.")
        line += (" Every run reached the target." if not missed else
                 f" Not every seed reached the target with: {', '.join(missed)}.")
        lines["train"].append(line)
    big = [s for s in a["summary"] if s["message_bytes"] >= 1e6 and s["error_fitted"] is not None]
    for which, label in (("nominal", "with the tc rate as bandwidth and 50 us latency"),
                         ("fitted", "recalibrated on the lab's mixing benchmark")):
        within = [s for s in big if abs(s[f"error_{which}"]) <= 0.25]
        misses = [f"{s['config']} at {s['rate']} {100 * s[f'error_{which}']:+.0f}%" for s in big if s not in within]
        lines["cost"].append(
            f"The cost model {label} predicted the communication time per step within 25% for {len(within)} of "
            f"{len(big)} configurations whose messages are 1 MB or more"
            + (f" (misses: {'; '.join(misses)})" if misses else "") + ".")
    for c in a["compressed"]:
        verdict = "met" if c["met"] else "not met"
        target = f"target {c['target']}x at 100 Mbit/s: {verdict}" if c["rate"] == "100mbit" else "no target at this rate"
        lines["compress"].append(f"At {c['rate']}, {c['what']}: CHOCO {c['codec']} step {c['step_ms']:.1f} ms against "
                                 f"the dense ring's {c['dense_ms']:.1f} ms, {c['ratio']:.2f}x ({target}).")
    for st in a["stragglers"]:
        kind = "a fixed" if st["arm"] == "fixed" else "a uniformly random"
        lines["straggler"].append(
            f"{st['config']} at {st['rate']} with {kind} {st['delay_ms']:.0f} ms delay (mean) on rank {STRAGGLER_RANK}: "
            f"the step grew from {st['base_step_ms']:.1f} to {st['step_ms']:.1f} ms, a wait of {st['wait_ms']:.1f} ms; "
            f"the cost model predicts {st['predicted_wait_ms']:.1f} ms.")
    return lines


def report(args, res: dict, meta: dict) -> None:
    to = Path(args.to or args.out)
    to.mkdir(parents=True, exist_ok=True)
    a = analyse(res, args.target)
    v = verdicts(res, a)
    (to / "results.json").write_text(json.dumps({"meta": meta, "analysis": a, "verdicts": v, "runs": res},
                                                indent=1) + "\n")
    plot(res, a, to / "accuracy_vs_time.png")
    s = res["settings"]
    train = ["| rate | configuration | step ms | compute ms | comm ms | other ms | dsgd MB/step | kernel MB/step/host "
             f"| s to {a['target']:.2f} acc | reached | final acc |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in a["summary"]:
        t = fmt(c["time_to_target_s"]) if c["time_to_target_s"] else "-"
        train.append(f"| {c['rate']} | {c['config']} | {fmt(c['step_ms'])} | {c['compute_ms']['mean']:.1f} | "
                     f"{c['comm_ms']['mean']:.1f} | {c['other_ms']['mean']:.1f} | "
                     f"{c['dsgd_bytes_per_step']['mean'] / 1e6:.3f} | {c['kernel_mb_per_step']['mean']:.3f} | {t} | "
                     f"{c['reached']} | {fmt(c['final_acc'], 3)} |")
    cost = ["| rate | configuration | message MB | measured comm ms | nominal model ms (error) | recalibrated ms (error) |",
            "|---|---|---|---|---|---|"]
    for c in a["summary"]:
        if c["error_fitted"] is None:
            continue
        cost.append(f"| {c['rate']} | {c['config']} | {c['message_bytes'] / 1e6:.3f} | {c['comm_ms']['mean']:.1f} | "
                    f"{c['predicted_comm_ms_nominal']:.1f} ({100 * c['error_nominal']:+.0f}%) | "
                    f"{c['predicted_comm_ms_fitted']:.1f} ({100 * c['error_fitted']:+.0f}%) |")
    links = ["| rate | tc rate, MB/s | fitted alpha, ms | fitted beta, MB/s | worst point error of the fit |",
             "|---|---|---|---|---|"]
    for rate, l in a["links"].items():
        f = l["fitted"]
        links.append(f"| {rate} | {l['nominal']['beta_bytes_per_s'] / 1e6:.2f} | {1000 * f['alpha_s']:.3f} | "
                     f"{f['beta_bytes_per_s'] / 1e6:.2f} | {100 * max(abs(p['error']) for p in f['points']):.0f}% |")
    points = ["| rate | step | floats | bytes/rank | measured ms | fitted ms (error) | plain mpi4py ms | link floor ms |",
              "|---|---|---|---|---|---|---|---|"]
    for rate, l in a["links"].items():
        for p in l["fitted"]["points"]:
            points.append(f"| {rate} | {'ring gossip' if p['kind'] == 'sparse' else 'allreduce'} | {p['numel']:,} | "
                          f"{p['bytes_sent_per_rank']:,} | {1000 * p['dsgd_s']:.1f} | {1000 * p['fitted_s']:.1f} "
                          f"({100 * p['error']:+.0f}%) | {1000 * p['raw_s']:.1f} | {1000 * floor_s(p, rate):.1f} |")
    comp = ["| rate | what | codec | step ms | dense ring ms | ratio | target (100mbit) | met | comm alone: ms, dense ms, ratio |",
            "|---|---|---|---|---|---|---|---|---|"]
    for c in a["compressed"]:
        alone = (f"{c['comm_ms']:.1f}, {c['dense_comm_ms']:.1f}, {c['comm_ratio']:.2f}" if "comm_ms" in c else
                 f"encode {c['encode_ms']:.1f} + decode {c['decode_ms']:.1f} ms; bytes {c['bytes_ratio']:.3f}x")
        comp.append(f"| {c['rate']} | {c['what']} | {c['codec']} | {c['step_ms']:.1f} | {c['dense_ms']:.1f} | "
                    f"{c['ratio']:.2f} | {c['target']} | {('yes' if c['met'] else 'no') if c['rate'] == '100mbit' else '-'} | {alone} |")
    strag = ["| configuration | delay | step ms without | step ms with | measured wait ms | predicted wait ms | "
             "comm ms without / with |", "|---|---|---|---|---|---|---|"]
    for st in a["stragglers"]:
        strag.append(f"| {st['config']} | {st['arm']} {st['delay_ms']:.0f} ms | {st['base_step_ms']:.1f} | "
                     f"{st['step_ms']:.1f} | {st['wait_ms']:.1f} | {st['predicted_wait_ms']:.1f} | "
                     f"{st['base_comm_ms']:.1f} / {st['comm_ms']:.1f} |")
    load = meta["machine"]["load_average_at_start"]
    shared = ("The CPU was shared: other work ran on the machine during the measurement"
              if load[0] >= 2.5 else "The machine was otherwise quiet when it started")
    first = (res["train"] or res["fp16"] or res["straggler"])[0]
    earlier = earlier_parts(meta)
    seeds_done = sorted({r["seed"] for r in res["train"]})
    missing = "" if res.get("complete", True) else (
        f"**This run was stopped before its end** (the time it was given ran out); what it measured is below: "
        f"the training grid has {len(res['train'])} of {len(CONFIGS) * len(s['rates']) * len(s['seeds'])} jobs "
        f"(seeds {', '.join(map(str, seeds_done)) or 'none'} complete or partly done).")
    text = [
        f"# Communication patterns on the lab: {HOSTS} hosts x 1 rank at {' and '.join(s['rates'])}", "",
        f"{provenance.provenance_line(meta)}, on `{meta['cpu_model']}` ({meta['machine']['cpus']} cores shared by "
        f"every host; 1/5/15-minute load average {load[0]:g} / {load[1]:g} / {load[2]:g} when it started). "
        f"{shared}, and every lab host runs on the same {meta['machine']['cpus']} cores, so compute per step is "
        f"inflated and varies; read `compute` beside `comm`. The run took {meta.get('wall_s', 0) / 60:.1f} "
        "minutes.", *(["", " ".join(earlier)] if earlier else []),
        *(["", missing] if missing else []), "",
        f"Every job: `launch/dsgd-lab --hosts {HOSTS} --rate RATE` around `python -m dsgd.train` on Fashion-MNIST "
        f"with the small CNN ({CNN_FLOATS:,} parameters, {4 * CNN_FLOATS / 1e6:.2f} MB), batch 32 per worker, "
        f"lr 0.05, {s['steps']} steps, BatchNorm statistics averaged at evaluation (`--bn-batches 0`; re-estimating them takes seconds per evaluation here), evaluation every {s['eval_every']} steps on the first {s['eval_samples']} "
        f"test samples; seeds {', '.join(map(str, s['seeds']))}. One job's command:", "",
        "```bash", first["command"], "```", "",
        "## Step time and time to accuracy", "",
        f"Means ± standard deviation over seeds. `step` is dsgd's wall time per step, evaluations included; "
        f"`compute`, `comm` and `other` split it (docs/lab.md). Target accuracy: {a['target']:.2f} (the highest "
        "multiple of 0.05 from 0.60 up that every run reached at some evaluation); time to it is dsgd's wall "
        "time at the first evaluation at or above it, so it is resolved to one evaluation interval.", "",
        *train, "", *v["train"], "", "![accuracy against wall time](accuracy_vs_time.png)", "",
        "## The cost model against the lab", "",
        "The communication time per step dsgd measured (`comm`, a mean over ranks) beside `dsgd.cost`'s "
        "prediction for the same exchange (`predict_step` with 4 nodes of one rank, the message size read off "
        "dsgd's byte count, plus the evaluations' averaging of the model, one allreduce each, which dsgd counts in `comm` "
        "too), first with the link as configured (the tc rate, 50 us latency), then with alpha "
        "and beta fitted to the lab's own mixing benchmark (below). Error = (predicted - measured) / measured; "
        "the target is 25% for messages of 1 MB and more.", "",
        *cost, "", *v["cost"], "",
        "The fit: `dsgd.bench mix --json` under the lab (ring gossip and the allreduce, at several sizes), one "
        "alpha and one beta per rate for both kinds of step with the model's own formulas (a ring step costs "
        "alpha + B / beta for the B bytes a rank sends; an allreduce of M bytes 2 (p - 1) alpha + "
        "2 (p - 1) / p M / beta).", "", *links, "", *points, "",
        "WHY_COST", "",
        "## Stragglers", "",
        f"Rank {STRAGGLER_RANK} sleeps after its gradients every step (`--straggler-rank {STRAGGLER_RANK} "
        f"--straggler-delay {args_delay(res)}`, and with `--straggler-random true` a uniform draw from 0 to twice "
        f"that), at {s['straggler_rate']}, {s['straggler_steps']} steps, one evaluation at the end. The wait is "
        "how much the step time grew against the same job without the delay. The prediction is `dsgd.cost`'s "
        "synchronous recursion (docs/cost-model.md) with the recalibrated link and `SlowRank`: an allreduce "
        "waits for the slowest rank, a gossip step for its slowest in-neighbour.", "",
        *strag, "", *v["straggler"], "", "WHY_STRAGGLER", "",
        "## Compressed steps against the dense ring", "",
        "The CNN rows are the training runs above (compute + comm per step; CHOCO fp16 is one seed with the same "
        "settings). The benchmark rows are `dsgd.bench compress --topology ring --codecs sign fp16` under the lab: "
        "one CHOCO-style compressed exchange (encode, send, decode) against the dense ring mixing step, the "
        "slowest rank's median.", "", *comp, "", *v["compress"], "", "WHY_COMPRESS", "",
        "## Commands", "", "```bash", *earlier_commands(meta), meta["command"], *([meta["report_command"]] if "report_command" in meta else []),
        "```", "",
        "Each part's lab command is in results.json (`runs`), with every job's own command line."]
    why = Path(args.notes) if args.notes else None
    body = "\n".join(text) + "\n"
    notes = json.loads(why.read_text()) if why and why.exists() else {}
    for key in ("WHY_COST", "WHY_STRAGGLER", "WHY_COMPRESS"):
        body = body.replace(key + "\n", (notes.get(key, "") + "\n") if notes.get(key) else "")
    (to / "README.md").write_text(body)
    print(body)
    print(f"report in {provenance.rel(to)}/")


def part_stamp(meta: dict) -> dict:
    """Where one part's numbers come from: the run's command, commit, date and load."""
    return {"command": meta["command"], "commit": meta["commit"], "date": meta["date"],
            "load_average_at_start": meta["machine"]["load_average_at_start"]}


def part_provenance(meta: dict) -> dict:
    """Each part's stamp: recorded, or for a run that ran every part, that run's own."""
    return meta.get("parts") or {p: part_stamp(meta) for p in PARTS}


def earlier_stamps(meta: dict) -> dict:
    """part -> stamp, for the parts measured by an earlier run than the one that wrote META."""
    return {part: st for part, st in part_provenance(meta).items()
            if (st["commit"], st["date"]) != (meta["commit"], meta["date"])}


def earlier_parts(meta: dict) -> list:
    """One sentence per group of parts measured by an earlier run than the one that wrote META."""
    groups = {}
    for part, st in earlier_stamps(meta).items():
        groups.setdefault((st["command"], st["commit"], st["date"], tuple(st["load_average_at_start"])), []).append(part)
    return [f"The {', '.join(parts)} part{'s' if len(parts) > 1 else ''} come{'' if len(parts) > 1 else 's'} from an "
            f"earlier run: `{command}` at commit `{commit}`, {date}, load average {load[0]:g} when it started."
            for (command, commit, date, load), parts in groups.items()]


def earlier_commands(meta: dict) -> list:
    """The commands of the earlier runs whose parts this report still shows, oldest first."""
    stamps = sorted((st["date"], st["command"]) for st in earlier_stamps(meta).values())
    return list(dict.fromkeys(command for _, command in stamps))


def args_delay(res: dict) -> str:
    arms = [r for r in res["straggler"] if r["arm"] == "fixed"]
    return f"{arms[0]['delay_s']:g}" if arms else "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["run", "report", "all"])
    ap.add_argument("--rates", nargs="+", default=["100mbit", "1000mbit"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--eval-samples", type=int, default=300)
    ap.add_argument("--straggler-steps", type=int, default=24)
    ap.add_argument("--straggler-rate", default="1000mbit")
    ap.add_argument("--delay", type=float, default=0.05, help="straggler delay, seconds")
    ap.add_argument("--target", type=float, help="target test accuracy (default: chosen from the runs)")
    ap.add_argument("--notes", help="JSON of paragraphs (WHY_COST, WHY_STRAGGLER, WHY_COMPRESS) for the report")
    ap.add_argument("--quick", action="store_true", help="every part once, small: a smoke test")
    ap.add_argument("--out", default=str(REPO / "runs" / "lab-patterns"))
    ap.add_argument("--to", help="where README.md, results.json and the plot go (default: --out)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per lab job")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                    help="run only these parts; the others keep their numbers from --out's runs.json")
    args = ap.parse_args(argv)
    command = provenance.script_command("lab_patterns.py", sys.argv[1:] if argv is None else argv)
    meta = {**provenance.produced_by(command), "machine": provenance.machine(), "cpu_model": lscpu_model()}
    runs = Path(args.out) / "runs.json"
    if args.part in ("run", "all"):
        kept, earlier = None, {}
        if set(args.parts) != set(PARTS):
            if not runs.is_file():
                ap.error(f"--parts keeps the other parts' numbers from {runs}, which does not exist: run every part first")
            saved = json.loads(runs.read_text())
            kept, earlier = saved["result"], part_provenance(saved["meta"])
            if kept["settings"] != settings(args):
                ap.error(f"--parts: these settings differ from those of the run in {runs}; run every part again")
        stamp = part_stamp(meta)
        meta["parts"] = {p: stamp if p in args.parts else earlier[p] for p in PARTS}
        t0 = time.time()
        runs.parent.mkdir(parents=True, exist_ok=True)

        def save(result):
            meta["wall_s"] = time.time() - t0
            runs.write_text(json.dumps({"meta": meta, "result": result}, indent=1) + "\n")
        res = run(args, save, kept)
        save(res)
    else:  # the numbers keep the provenance of the run that made them
        if not runs.is_file():
            ap.error(f"no runs to report on: {runs} does not exist; run `run` (or `all`) first, with the same --out")
        saved = json.loads(runs.read_text())
        res, meta = saved["result"], {**saved["meta"], "report_command": command}
    if args.part in ("report", "all"):
        report(args, res, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())

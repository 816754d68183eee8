"""C-SGD (allreduce) against D-SGD on a ring, on 4 lab hosts whose links run at 1 Gbit/s and 50 Mbit/s.

    python experiments/lab_bandwidth.py run    [--rates 1000mbit 50mbit] [--seeds 0 1 2] [--steps 40]
                                               [--out runs/lab-bandwidth]
    python experiments/lab_bandwidth.py report [--out runs/lab-bandwidth] [--to docs/lab]
    python experiments/lab_bandwidth.py all --to docs/lab

Question: when the network, not shared memory, carries the bytes, which of the two steps is faster,
and is the difference the bytes each puts on a host's link? Each cell is one `launch/dsgd-lab`
job (4 namespace hosts x 1 rank, every host link limited by tbf) of `python -m dsgd.train` on
Fashion-MNIST with the MLP; the lab's JSON (kernel bytes per host, dsgd's own counts and its step
split into compute and communication) goes into the cell's run directory as lab.json. Needs
root (see docs/lab.md). A cell is rerun unless its directory holds the same command at the same
clean commit (experiments/provenance.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import provenance  # noqa: E402

HOSTS = 4
ALGORITHMS = {"C-SGD (allreduce)": ["--algorithm", "csgd"],
              "D-SGD (ring)": ["--algorithm", "dsgd", "--topology", "ring"]}
TRAIN = ["--dataset", "fashion-mnist", "--model", "mlp", "--batch-size", "32", "--lr", "0.05", "--epochs", "1",
         "--eval-samples", "500"]


def cell_line(rate: str, algorithm: str, seed: int, steps: int, run_dir: Path) -> list:
    """The lab job of one cell, paths relative to the repository (where it runs)."""
    out = provenance.rel(run_dir)
    return ["launch/dsgd-lab", "--hosts", str(HOSTS), "--rate", rate, "--json", f"{out}/lab.json",
            "--", "python", "-m", "dsgd.train", *ALGORITHMS[algorithm], *TRAIN, "--steps-per-epoch", str(steps),
            "--eval-every", str(steps), "--seed", str(seed), "--out", out]


def cell_dir(out: Path, rate: str, algorithm: str, seed: int) -> Path:
    slug = "csgd" if algorithm.startswith("C-SGD") else "dsgd-ring"
    return out / f"{rate}-{slug}-seed{seed}"


def run(args) -> list:
    """Every cell, one lab job each; returns one row per job."""
    code, rows = provenance.commit(), []
    for rate in args.rates:
        for algorithm in ALGORITHMS:
            for seed in args.seeds:
                run_dir = cell_dir(Path(args.out), rate, algorithm, seed)
                line = cell_line(rate, algorithm, seed, args.steps, run_dir)
                job, _ = provenance.run_job(line, run_dir, code, args.timeout, "lab_bandwidth.py",
                                            f"{algorithm} at {rate}, seed {seed}")
                rows.append(cell_row(rate, algorithm, seed, run_dir, job))
    return rows


def cell_row(rate: str, algorithm: str, seed: int, run_dir: Path, job: dict) -> dict:
    lab = json.loads((run_dir / "lab.json").read_text())
    d, hosts = lab["dsgd"], lab["hosts"]
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    steps = d["steps"]
    return {"rate": rate, "algorithm": algorithm, "seed": seed, "steps": steps, "command": job["command"],
            "step_ms": 1000 * d["wall_s_per_step"], "compute_ms": 1000 * d["compute_s_per_step"],
            "comm_ms": 1000 * d["comm_s_per_step"], "other_ms": 1000 * d["other_s_per_step"],
            "link_floor_ms": 1000 * d["link_s_per_step"],
            "dsgd_mb_per_step": d["bytes_sent_per_worker"] / steps / 1e6,
            "kernel_mb_per_step": statistics.mean(h["sent_bytes"] for h in hosts) / steps / 1e6,
            "test_acc": last["test_acc"]}


def summarize(rows: list) -> list:
    """Median and range over seeds of each (rate, algorithm)."""
    cells = {}
    for r in rows:
        cells.setdefault((r["rate"], r["algorithm"]), []).append(r)
    out = []
    for (rate, algorithm), group in cells.items():
        s = {"rate": rate, "algorithm": algorithm, "seeds": len(group)}
        for key in ("step_ms", "compute_ms", "comm_ms", "other_ms", "link_floor_ms", "dsgd_mb_per_step",
                    "kernel_mb_per_step", "test_acc"):
            values = [r[key] for r in group]
            s[key] = statistics.median(values)
            s[key + "_range"] = [min(values), max(values)]
        out.append(s)
    return out


def verdicts(summary: list) -> list:
    """One plain sentence per rate: which step was faster, by how much, and the bytes behind it."""
    lines = []
    for rate in dict.fromkeys(s["rate"] for s in summary):
        c, d = (next(s for s in summary if s["rate"] == rate and s["algorithm"] == a) for a in ALGORITHMS)
        fast, slow = (c, d) if c["step_ms"] <= d["step_ms"] else (d, c)
        spread = "one seed" if c["seeds"] < 2 else "the seeds' ranges " + (
            "do not overlap" if fast["step_ms_range"][1] < slow["step_ms_range"][0] else "overlap")
        lines.append(
            f"At {rate}, {fast['algorithm']} was faster: {fast['step_ms']:.1f} ms per step against "
            f"{slow['step_ms']:.1f} ms ({slow['step_ms'] / fast['step_ms']:.2f}x; {spread}). Communication took "
            f"{c['comm_ms']:.1f} ms (C-SGD) and {d['comm_ms']:.1f} ms (D-SGD), compute {c['compute_ms']:.1f} and "
            f"{d['compute_ms']:.1f} ms; each host's link carried {c['kernel_mb_per_step']:.3f} and "
            f"{d['kernel_mb_per_step']:.3f} MB per step.")
    ratio = {a: statistics.median(s["kernel_mb_per_step"] / s["dsgd_mb_per_step"] for s in summary
                                  if s["algorithm"] == a) for a in ALGORITHMS}
    lines.append("Kernel bytes against dsgd's own count (median over rates): " + ", ".join(
        f"{a} {r:.2f}x" for a, r in ratio.items()) + ". dsgd counts one model per worker for an allreduce; "
        f"a ring allreduce puts 2(n-1)/n = {2 * (HOSTS - 1) / HOSTS:g} models on each link, so C-SGD's link floor "
        "above is a lower bound.")
    return lines


def lscpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def plot(summary: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    labels, bottoms = [f"{s['algorithm']}\n{s['rate']}" for s in summary], [0.0] * len(summary)
    for part, color in (("compute_ms", "tab:blue"), ("comm_ms", "tab:orange"), ("other_ms", "tab:gray")):
        values = [s[part] for s in summary]
        ax.bar(labels, values, bottom=bottoms, color=color, label=part[:-3])
        bottoms = [b + v for b, v in zip(bottoms, values)]
    ax.scatter(labels, [s["link_floor_ms"] for s in summary], marker="_", s=900, color="black",
               label="link floor for dsgd's bytes", zorder=3)
    ax.set_ylabel("ms per step (median over seeds)")
    ax.set_title(f"{HOSTS} lab hosts x 1 rank, Fashion-MNIST MLP")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(args, rows: list, meta: dict) -> None:
    to = Path(args.to or args.out)
    to.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)
    (to / "results.json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": rows}, indent=1) + "\n")
    plot(summary, to / "step_time.png")
    table = ["| rate | algorithm | step ms (range) | compute ms | comm ms | other ms | link floor ms | "
             "dsgd MB/step/worker | kernel MB/step/host | test acc |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lo, hi = s["step_ms_range"]
        table.append(f"| {s['rate']} | {s['algorithm']} | {s['step_ms']:.1f} ({lo:.1f}-{hi:.1f}) | "
                     f"{s['compute_ms']:.1f} | {s['comm_ms']:.1f} | {s['other_ms']:.1f} | {s['link_floor_ms']:.1f} | "
                     f"{s['dsgd_mb_per_step']:.3f} | {s['kernel_mb_per_step']:.3f} | {s['test_acc']:.3f} |")
    rates, seeds = list(dict.fromkeys(r["rate"] for r in rows)), sorted({r["seed"] for r in rows})
    text = [f"# C-SGD against D-SGD on a ring, on {HOSTS} lab hosts at {' and '.join(rates)}", "",
            f"Question: when every host's link runs at these rates, is a D-SGD step on a ring (each worker sends "
            f"its model to 2 neighbours) faster than a C-SGD step (an allreduce) at {HOSTS} hosts? The answer per "
            f"rate is in the sentences below the table.", "",
            f"{provenance.provenance_line(meta)}, on `{meta['cpu_model']}` ({meta['machine']['cpus']} cores shared "
            f"by all hosts; load average {meta['machine']['load_average_at_start'][0]:g} when it started). Each "
            f"cell: {rows[0]['steps']} steps, seeds {', '.join(map(str, seeds))}; medians over seeds, the step "
            f"time's range in brackets. One cell's command:", "", "```bash", rows[0]["command"], "```",
            "", *table, "", *verdicts(summary), "", "![step time](step_time.png)", "",
            "Columns are the lab report's (docs/lab.md): dsgd's own per-step seconds and bytes, and the kernel's "
            "bytes on each host's link. `other` is evaluation (once, 500 samples), data and logging, spread over "
            "the steps; `link floor` is the least time dsgd's bytes need on a host's link at the rate. The kernel's "
            "bytes include Open MPI's start-up and the evaluation's collectives, spread over the steps as well."]
    (to / "README.md").write_text("\n".join(text) + "\n")
    print("\n".join(table + [""] + verdicts(summary)))
    print(f"report in {provenance.rel(to)}/")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["run", "report", "all"])
    ap.add_argument("--rates", nargs="+", default=["1000mbit", "50mbit"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", default=str(REPO / "runs" / "lab-bandwidth"))
    ap.add_argument("--to", help="where README.md, results.json and the plot go (default: --out)")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args(argv)
    command = provenance.script_command("lab_bandwidth.py", sys.argv[1:] if argv is None else argv)
    meta = {**provenance.produced_by(command), "machine": provenance.machine(), "cpu_model": lscpu_model()}
    runs = Path(args.out) / "runs.json"
    if args.part in ("run", "all"):
        t0 = time.time()
        rows = run(args)
        meta["wall_s"] = time.time() - t0
        runs.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    else:  # the numbers keep the provenance of the run that made them
        saved = json.loads(runs.read_text())
        rows, meta = saved["rows"], {**saved["meta"], "report_command": command}
    if args.part in ("report", "all"):
        report(args, rows, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())

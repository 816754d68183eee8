"""Heterogeneous data: where the communication graph changes accuracy, and which methods undo it.

    python experiments/heterogeneity.py sweep  [--seeds 0 1 2] [--steps 100] [--out runs/heterogeneity]
    python experiments/heterogeneity.py scale  [--workers 16 32 64] [--seeds 0 1 2] [--out runs/heterogeneity]
    python experiments/heterogeneity.py report [--out runs/heterogeneity] [--to DIR]
    python experiments/heterogeneity.py all --quick      # a small configuration of everything (CI)

sweep: 16 workers (2 MPI ranks x 8), Fashion-MNIST, the small CNN without normalization, label
partitions IID / Dirichlet alpha = 1 / alpha = 0.1, graphs and algorithms chosen to answer four
questions (see QUESTIONS), several seeds each. scale: ring, exponential and complete graphs at
16, 32, 64 workers under alpha = 0.1 (the MLP, so 64 workers fit on two cores; local batches drawn
with replacement, since 64 x 16 x 100 samples exceed the training set). Every job is a
real `mpirun` of `python -m dsgd.train`; its run directory records the command and the commit it
ran from, and a job is rerun unless both match (a dirty tree always reruns). `report` writes
results.md, results.json and plots to DIR (default: OUT itself; never into docs/ unless asked).
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dsgd import launcher  # noqa: E402
import provenance  # noqa: E402

RANKS = 2
COMMON = ["--dataset", "fashion-mnist", "--norm", "none", "--batch-size", "16", "--eval-samples", "1000",
          "--heterogeneity-metrics", "true"]
MOMENTUM = ["--lr", "0.05", "--momentum", "0.9"]          # D-SGD with local momentum, quasi-global momentum
PLAIN = ["--lr", "0.1", "--momentum", "0"]                 # methods that step by their own recursion (0.2 diverged)
QUICK = ["--eval-samples", "500", "--probe-samples", "64"]  # later flags win
PARTITIONS = {"iid": "iid", "alpha=1": "dirichlet:alpha=1", "alpha=0.1": "dirichlet:alpha=0.1"}
GRAPHS = {"complete": "complete", "ring": "ring", "torus": "torus:rows=4,cols=4", "exponential": "exponential",
          "one-peer-exponential": "one-peer-exponential"}


def method(name: str) -> list[str]:
    return {"dsgd-momentum": ["--algorithm", "dsgd", *MOMENTUM],
            "qgm": ["--algorithm", "qgm", *MOMENTUM],
            "dsgd-plain": ["--algorithm", "dsgd", *PLAIN],
            "gradient-tracking": ["--algorithm", "gradient-tracking", *PLAIN],
            "exact-diffusion": ["--algorithm", "exact-diffusion", *PLAIN],
            "choco-sign": ["--algorithm", "choco", *PLAIN, "--compress", "sign", "--consensus-step", "0.5"]}[name]


def sweep_grid(quick: bool) -> list[dict]:
    """The subset of methods x graphs x partitions that answers QUESTIONS (the full grid: --full)."""
    cells = [("dsgd-momentum", g, "alpha=0.1") for g in ("complete", "ring", "one-peer-exponential")]
    cells += [("dsgd-momentum", g, "iid") for g in ("complete", "ring")]
    cells += [("qgm", "ring", "alpha=0.1")]
    cells += [("dsgd-plain", g, "alpha=0.1") for g in ("complete", "ring")]
    cells += [(m, "ring", "alpha=0.1") for m in ("gradient-tracking", "exact-diffusion", "choco-sign")]
    if quick:  # the pipeline end to end, not the CNN: the MLP keeps CI's run short
        cells = [("dsgd-momentum", "complete", "alpha=0.1"), ("dsgd-momentum", "ring", "alpha=0.1")]
    return [{"study": "sweep", "method": m, "graph": g, "partition": p, "n": 16, "model": "mlp" if quick else "cnn"}
            for m, g, p in cells]


def full_grid() -> list[dict]:
    """Every method x graph x partition at 16 workers (the recipe for a GPU or a bigger machine)."""
    return [{"study": "sweep", "method": m, "graph": g, "partition": p, "n": 16, "model": "cnn"}
            for m in ("dsgd-momentum", "qgm", "dsgd-plain", "gradient-tracking", "exact-diffusion", "choco-sign")
            for g in GRAPHS for p in PARTITIONS]


def scale_grid(workers: list[int], quick: bool) -> list[dict]:
    graphs = ["complete", "ring"] if quick else ["complete", "exponential", "ring"]
    workers = workers[:1] if quick else workers
    return [{"study": "scale", "method": "dsgd-momentum", "graph": g, "partition": "alpha=0.1", "n": n, "model": "mlp"}
            for n in workers for g in graphs]


def key(cell: dict) -> str:
    return f"{cell['study']}/n{cell['n']}/{cell['partition']}/{cell['method']}/{cell['graph']}"


def trainer_args(cell: dict, seed: int, steps: int, run_dir: Path, quick: bool = False) -> list[str]:
    every = max(1, steps // (2 if quick else 4))
    return ["-m", "dsgd.train", *method(cell["method"]), *COMMON, *(QUICK if quick else []), "--model", cell["model"],
            "--topology", GRAPHS[cell["graph"]], "--partition", PARTITIONS[cell["partition"]], "--seed", str(seed),
            "--workers-per-rank", str(cell["n"] // RANKS), "--steps-per-epoch", str(steps), "--epochs", "1",
            "--eval-every", str(every), "--log-every", str(every), "--out", str(run_dir), "--overwrite", "true",
            # 64 workers x 16 x 100 steps is more than the training set: the scale study samples each
            # worker's part with replacement at every n, so the worker counts differ in nothing else
            *(["--replacement", "true"] if cell["study"] == "scale" else [])]


QUICK_METRICS = ("step", "test_acc", "consensus_distance", "zeta2", "local_test_acc_mean", "local_test_acc_min",
                 "bytes_sent")


def run_job(cell: dict, seed: int, steps: int, out: Path, timeout: float, code: str, quick: bool = False,
            also_keep: list[str] = ()) -> dict:
    run_dir = out / key(cell) / f"seed{seed}"
    line = launcher.mpirun_command(RANKS, trainer_args(cell, seed, steps, Path(provenance.rel(run_dir)), quick),
                                   provenance.python(), threads=1 if quick else None)
    # --keep-commit C: the same command run at clean commit C stands (each run names its own commit)
    earlier = next((j for c in also_keep if (j := provenance.kept_job(run_dir, shlex.join(line), c))), None)
    if earlier is not None:
        print(f"== {key(cell)} seed {seed}: same command at kept commit {earlier['commit'][:10]}", flush=True)
        return summarize(cell, seed, run_dir, earlier)
    job, kept = provenance.run_job(line, run_dir, code, timeout, "heterogeneity", f"{key(cell)} seed {seed}")
    s = summarize(cell, seed, run_dir, job)
    if not kept:
        print(f"   final test acc {s['final_test_acc']:.4f} (local models: mean {s['final_local_mean']:.4f}, "
              f"min {s['final_local_min']:.4f}), {job['job_wall_s']:.0f} s", flush=True)
    return s


def summarize(cell: dict, seed: int, run_dir: Path, job: dict) -> dict:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if "test_acc" in r]
    series = {k: [r.get(k) for r in rows] for k in ("step", "test_acc", "consensus_distance", "zeta2",
                                                     "local_test_acc_mean", "local_test_acc_min", "bytes_sent")}
    return {**cell, "key": key(cell), "seed": seed, **series, "final_test_acc": rows[-1]["test_acc"],
            "final_local_mean": rows[-1].get("local_test_acc_mean"), "final_local_min": rows[-1].get("local_test_acc_min"),
            "mb_sent_per_worker": rows[-1]["bytes_sent"] / 1e6, "run_dir": provenance.rel(run_dir),
            "command": job["command"], "commit": job["commit"], "job_wall_s": job["job_wall_s"], "date": job["date"]}


# -- aggregation and the report ------------------------------------------------------------
def groups(runs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in runs:
        out.setdefault(r["key"], []).append(r)
    return out


def stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def table(runs: list[dict]) -> dict[str, dict]:
    return {k: {"cell": {f: rs[0][f] for f in ("study", "method", "graph", "partition", "n", "model")},
                "final_test_acc": stats([r["final_test_acc"] for r in rs]),
                "final_local_mean": stats([r["final_local_mean"] for r in rs]),
                "final_local_min": stats([r["final_local_min"] for r in rs]),
                "mb_sent_per_worker": statistics.fmean(r["mb_sent_per_worker"] for r in rs),
                "final_consensus_distance": statistics.fmean(r["consensus_distance"][-1] for r in rs),
                "final_zeta2": statistics.fmean(r["zeta2"][-1] for r in rs),
                "seeds": sorted(r["seed"] for r in rs)}
            for k, rs in groups(runs).items()}


def compare(t: dict, a: str, b: str) -> dict | None:
    """b - a in final test accuracy, against the seed spread (the larger standard deviation of the two)."""
    if a not in t or b not in t:
        return None
    A, B = t[a]["final_test_acc"], t[b]["final_test_acc"]
    diff, spread = B["mean"] - A["mean"], max(A["std"], B["std"])
    seeds = min(A["n"], B["n"])
    return {"a": a, "b": b, "a_mean": A["mean"], "b_mean": B["mean"], "diff": diff, "spread": spread,
            "seeds": seeds, "beyond_spread": abs(diff) > spread if seeds >= MIN_SEEDS else None}


MIN_SEEDS = 3  # fewer seeds on either side: the numbers are shown, no verdict is drawn


def claim(r: dict) -> str:
    if r["beyond_spread"] is None:
        return f"is not tested (only {r['seeds']} seed{'s' if r['seeds'] != 1 else ''} ran on one side)"
    return "holds" if r["beyond_spread"] and r["diff"] > 0 else "does not hold"


def verdict(r: dict, yes: str, no: str) -> str:
    if r["beyond_spread"] is None:
        return f"no verdict (only {r['seeds']} seed{'s' if r['seeds'] != 1 else ''} on one side) on"
    return yes if r["beyond_spread"] else no


def sweep_key(m, g, p, n=16, study="sweep"):
    return key({"study": study, "method": m, "graph": g, "partition": p, "n": n})


def answers(t: dict) -> dict:
    """The four questions, answered from the numbers (None where a configuration did not run)."""
    a = compare(t, sweep_key("dsgd-momentum", "complete", "alpha=0.1"), sweep_key("dsgd-momentum", "ring", "alpha=0.1"))
    c = compare(t, sweep_key("dsgd-momentum", "complete", "iid"), sweep_key("dsgd-momentum", "ring", "iid"))
    b = {}
    for m, base, ref in (("qgm", "dsgd-momentum", "dsgd-momentum"), ("gradient-tracking", "dsgd-plain", "dsgd-plain"),
                         ("exact-diffusion", "dsgd-plain", "dsgd-plain"), ("choco-sign", "dsgd-plain", "dsgd-plain")):
        got = compare(t, sweep_key(base, "ring", "alpha=0.1"), sweep_key(m, "ring", "alpha=0.1"))
        full = compare(t, sweep_key(ref, "ring", "alpha=0.1"), sweep_key(ref, "complete", "alpha=0.1"))
        if got is None:
            continue
        gap = full["diff"] if full else None
        b[m] = {**got, "ring_to_complete_gap": gap,
                "gap_closed": got["diff"] / gap if gap and abs(gap) > 1e-12 else None}
    return {"a_ring_vs_complete_alpha0.1": a, "b_robust_methods_on_ring_alpha0.1": b, "c_ring_vs_complete_iid": c}


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def sentences(ans: dict, scale: dict) -> list[str]:
    out = []
    a = ans["a_ring_vs_complete_alpha0.1"]
    if a:
        out.append(f"(a) Under Dirichlet alpha = 0.1, D-SGD on the ring ends at {pct(a['b_mean'])}% against "
                   f"{pct(a['a_mean'])}% on the complete graph: a difference of {pct(a['diff'])} points, "
                   f"{verdict(a, 'more than', 'not more than')} the seed spread "
                   f"({pct(a['spread'])} points, the larger standard deviation).")
    for m, r in ans["b_robust_methods_on_ring_alpha0.1"].items():
        closed = (f"; that is {100 * r['gap_closed']:.0f}% of the ring-to-complete gap of its baseline "
                  f"({pct(r['ring_to_complete_gap'])} points)" if r["gap_closed"] is not None else "")
        out.append(f"(b) {m} on the ring under alpha = 0.1: {pct(r['b_mean'])}% against {pct(r['a_mean'])}% for "
                   f"{r['a'].split('/')[3]} on the same ring, {pct(r['diff'])} points "
                   f"({verdict(r, 'beyond', 'within')} the seed spread of {pct(r['spread'])}){closed}.")
    c = ans["c_ring_vs_complete_iid"]
    if c:
        out.append(f"(c) Under IID data the ring and the complete graph end at {pct(c['b_mean'])}% and "
                   f"{pct(c['a_mean'])}%: {pct(c['diff'])} points, "
                   f"{verdict(c, 'beyond', 'within')} the seed spread ({pct(c['spread'])}).")
    q = ans["b_robust_methods_on_ring_alpha0.1"].get("qgm")
    if q:
        out.append(f"(d) Published claim: quasi-global momentum beats local momentum on a non-IID ring. Here: "
                   f"{pct(q['diff'])} points; the claim "
                   f"{claim(q)} at this scale (a gain beyond the seed spread is the test).")
    for m in ("gradient-tracking", "exact-diffusion"):
        r = ans["b_robust_methods_on_ring_alpha0.1"].get(m)
        if r:
            out.append(f"(d) Published claim: {m} beats D-SGD when workers see few labels. Here, against D-SGD "
                       f"with the same plain steps: {pct(r['diff'])} points; the claim "
                       f"{claim(r)} at this scale.")
    for line in scale:
        out.append(line)
    return out


def scale_sentences(t: dict, workers: list[int]) -> list[str]:
    out = []
    gaps = []
    for n in workers:
        cmp = compare(t, sweep_key("dsgd-momentum", "complete", "alpha=0.1", n, "scale"),
                      sweep_key("dsgd-momentum", "ring", "alpha=0.1", n, "scale"))
        if cmp:
            gaps.append((n, cmp))
    expo = [(n, c) for n in workers if (c := compare(t, sweep_key("dsgd-momentum", "complete", "alpha=0.1", n, "scale"),
                                                     sweep_key("dsgd-momentum", "exponential", "alpha=0.1", n, "scale")))]
    if expo:
        desc = ", ".join(f"n = {n}: {pct(-c['diff'])} points (seed spread {pct(c['spread'])})" for n, c in expo)
        out.append(f"Scale: the complete graph minus the static exponential graph under alpha = 0.1, {desc}.")
    if gaps:
        desc = ", ".join(f"n = {n}: {pct(-c['diff'])} points (seed spread {pct(c['spread'])})" for n, c in gaps)
        out.append(f"Scale: the complete graph minus the ring under alpha = 0.1, {desc}.")
        if len(gaps) > 1:
            grows = all(gaps[i + 1][1]["diff"] < gaps[i][1]["diff"] for i in range(len(gaps) - 1))
            beyond = [n for n, c in gaps if c["beyond_spread"]]  # None (too few seeds) counts as no
            out.append(f"Scale: the gap {'grows' if grows else 'does not grow steadily'} with the number of workers "
                       f"(the ring's spectral gap shrinks as 1/n^2); it exceeds the seed spread at "
                       f"{', '.join(f'n = {n}' for n in beyond) if beyond else 'no n tried'}.")
    return out


def band_plot(ax, rs: list[dict], metric: str, label: str, x: str = "step"):
    xs = rs[0][x] if x == "step" else [statistics.fmean(v) for v in zip(*[[b / 1e6 for b in r["bytes_sent"]] for r in rs])]
    ys = list(zip(*[r[metric] for r in rs]))
    mean = [statistics.fmean(v) for v in ys]
    line, = ax.plot(xs, mean, label=label)
    ax.fill_between(xs, [min(v) for v in ys], [max(v) for v in ys], alpha=0.2, color=line.get_color())


def plots(runs: list[dict], to: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    g = groups(runs)
    made = []

    def figure(name, panels, metric, ylabel, x="step", log=False):
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
        for ax, (title, keys) in zip(axes[0], panels):
            for k, label in keys:
                if k in g:
                    band_plot(ax, g[k], metric, label, x)
            ax.set_title(title)
            ax.set_xlabel("MB sent per worker" if x == "bytes" else "step")
            ax.set_ylabel(ylabel)
            if log:
                ax.set_yscale("log")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{ylabel}: mean over seeds, band = min..max", fontsize=10)
        fig.tight_layout()
        fig.savefig(to / name, dpi=110)
        plt.close(fig)
        made.append(name)

    topo = [(sweep_key("dsgd-momentum", gr, "alpha=0.1"), f"D-SGD {gr}") for gr in GRAPHS]
    control = [(sweep_key("dsgd-momentum", gr, p), f"D-SGD {gr}, {p}") for p in ("iid", "alpha=1")
               for gr in ("complete", "ring")]
    figure("a_topology_under_heterogeneity.png", [("16 workers, Dirichlet alpha = 0.1", topo),
                                                  ("control: IID data (and alpha = 1 where run)", control)], "test_acc", "test accuracy")
    robust = [(sweep_key(m, gr, "alpha=0.1"), f"{m} {gr}") for m, gr in
              (("dsgd-momentum", "complete"), ("dsgd-momentum", "ring"), ("qgm", "ring"))]
    plain = [(sweep_key(m, gr, "alpha=0.1"), f"{m} {gr}") for m, gr in
             (("dsgd-plain", "complete"), ("dsgd-plain", "ring"), ("gradient-tracking", "ring"),
              ("exact-diffusion", "ring"), ("choco-sign", "ring"))]
    figure("b_robust_methods_on_the_ring.png", [("with momentum, alpha = 0.1", robust),
                                                ("plain steps, alpha = 0.1", plain)], "test_acc", "test accuracy")
    figure("accuracy_vs_mb.png", [("alpha = 0.1", topo + robust[2:] + plain)], "test_acc", "test accuracy", x="bytes")
    figure("consensus_distance.png", [("alpha = 0.1", topo + robust[2:] + plain)], "consensus_distance",
           "consensus distance", log=True)
    figure("zeta2.png", [("zeta^2 at the averaged model", topo + control)], "zeta2", "zeta^2", log=True)
    scale = sorted({r["n"] for r in runs if r["study"] == "scale"})
    if scale:
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for gr in ("complete", "exponential", "ring"):
            pts = [(n, [r["final_test_acc"] for r in g.get(sweep_key("dsgd-momentum", gr, "alpha=0.1", n, "scale"), [])])
                   for n in scale]
            pts = [(n, v) for n, v in pts if v]
            if pts:
                ax.errorbar([n for n, _ in pts], [statistics.fmean(v) for _, v in pts],
                            yerr=[[statistics.fmean(v) - min(v) for _, v in pts], [max(v) - statistics.fmean(v) for _, v in pts]],
                            marker="o", capsize=3, label=f"D-SGD {gr}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("workers")
        ax.set_ylabel("final test accuracy")
        ax.set_title("Scale under alpha = 0.1 (MLP): mean, bars = min..max over seeds")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(to / "scale.png", dpi=110)
        plt.close(fig)
        made.append("scale.png")
    return made


def write_report(results: dict, to: Path) -> None:
    to.mkdir(parents=True, exist_ok=True)
    runs = results["runs"]
    t = table(runs)
    workers = sorted({r["n"] for r in runs if r["study"] == "scale"})
    ans = answers(t)
    said = sentences(ans, scale_sentences(t, workers))
    results = {**results, "table": t, "answers": ans, "sentences": said}
    (to / "results.json").write_text(json.dumps(results, indent=1))
    made = plots(runs, to)
    m = results["meta"]
    lines = ["# Heterogeneous data: topology and heterogeneity-robust methods", "",
             f"Runs trained at commit(s) `{m['commit']}` on {m['machine']}, dates "
             f"{min(r['date'] for r in runs)} to {max(r['date'] for r in runs)}; total job time "
             f"{sum(r['job_wall_s'] for r in runs):.0f} s. Report produced by `{m['command']}` at commit "
             f"`{m['report_commit']}`, {m['date']}.", "",
             f"Setup: {m['setup']}", "", "## What the numbers say", ""]
    lines += [f"- {s}" for s in said]
    lines += ["", "## Final test accuracy (mean ± std over seeds, min..max)", "",
              "| study | n | partition | method | graph | test acc (%) | local models: mean / min (%) | zeta^2 | "
              "consensus | MB / worker | seeds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for k in sorted(t, key=lambda k: (t[k]["cell"]["study"], t[k]["cell"]["n"], t[k]["cell"]["partition"], k)):
        c, a = t[k]["cell"], t[k]["final_test_acc"]
        lines.append(f"| {c['study']} | {c['n']} | {c['partition']} | {c['method']} | {c['graph']} | "
                     f"{pct(a['mean'])} ± {pct(a['std'])} ({pct(a['min'])}..{pct(a['max'])}) | "
                     f"{pct(t[k]['final_local_mean']['mean'])} / {pct(t[k]['final_local_min']['mean'])} | "
                     f"{t[k]['final_zeta2']:.3g} | {t[k]['final_consensus_distance']:.3g} | "
                     f"{t[k]['mb_sent_per_worker']:.0f} | {len(t[k]['seeds'])} |")
    have = {(r["key"], r["seed"]) for r in runs}
    seeds = m.get("seeds", [0, 1, 2])
    missing = [f"`{key(c)}` seed {sd}" for c in sweep_grid(m.get("quick", False)) + scale_grid(
               m.get("workers", [16, 32, 64]), m.get("quick", False)) for sd in seeds if (key(c), sd) not in have]
    if missing:
        lines += ["", "## Not run", "", f"Of the planned jobs, {len(missing)} did not run and appear nowhere above: "
                  + ", ".join(missing) + "."]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in made]
    lines += ["", "## Left out", "", m["left_out"], "", "## Commands", "",
              "Every job's exact command is in results.json (`runs[].command`); one of them:", "", "```bash",
              runs[0]["command"].replace(str(REPO) + "/", ""), "```", ""]
    (to / "results.md").write_text("\n".join(lines))
    print(f"report: {to / 'results.md'}")


SETUP = ("Fashion-MNIST, the small CNN without normalization (scale: the MLP), local batch 16, 2 MPI ranks "
         "holding n / 2 workers each; D-SGD with local momentum and quasi-global momentum at lr 0.05, "
         "momentum 0.9; the methods that step by their own recursion (gradient tracking, exact diffusion, "
         "CHOCO-SGD with sign compression, consensus step 0.5) beside D-SGD with the same plain steps at "
         "lr 0.1 (at lr 0.2 plain D-SGD on the ring diverged for one seed); label partitions by Dirichlet(alpha) over classes; evaluation of the averaged model and of "
         "every worker's own model on 1000 test images; zeta^2 on 256 fixed probe samples per worker.")
LEFT_OUT = ("Of the full grid (6 methods x 5 graphs x 3 partitions at 16 workers), the sweep runs D-SGD with "
            "local momentum on the complete graph, the ring and the one-peer exponential graph under alpha = 0.1 "
            "and on the complete graph and the ring under IID data (the control); quasi-global momentum on the ring "
            "under alpha = 0.1; and, with plain steps, D-SGD on the complete graph and the ring, gradient tracking, "
            "exact diffusion and CHOCO-SGD (sign) on the ring, all under alpha = 0.1. Left out for time: the torus "
            "and the static exponential graph, Dirichlet alpha = 1, the robust methods on other graphs and under "
            "IID data. The full grid: `python "
            "experiments/heterogeneity.py sweep --full` (270 jobs; on a GPU add trainer flags such as "
            "`--device cuda` and more steps).")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["sweep", "scale", "report", "all"])
    ap.add_argument("--out", help="run directories and runs.json (default: runs/heterogeneity, with --quick "
                    "runs/heterogeneity-quick)")
    ap.add_argument("--to", help="where report writes results.md, results.json and plots (default: --out); with "
                    "--quick only quick.json goes there")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=100, help="training steps of each job (one epoch of this length)")
    ap.add_argument("--workers", type=int, nargs="+", default=[16, 32, 64], help="scale: worker counts")
    ap.add_argument("--full", action="store_true", help="sweep: every method x graph x partition")
    ap.add_argument("--quick", action="store_true", help="a small configuration (CI): 1 seed, few steps, few cells")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--keep-commit", nargs="+", default=[], metavar="COMMIT",
                    help="also keep run directories of the same command run at these clean commits (the "
                         "report names every run's commit)")
    args = ap.parse_args(argv)
    out = Path(args.out or REPO / "runs" / ("heterogeneity-quick" if args.quick else "heterogeneity"))
    if args.quick:
        args.seeds, args.steps, args.workers = args.seeds[:1], min(args.steps, 8), [8]
    out.mkdir(parents=True, exist_ok=True)
    store = out / "runs.json"
    runs = json.loads(store.read_text())["runs"] if store.is_file() else []
    code = provenance.commit()
    cells = []
    if args.what in ("sweep", "all"):
        cells += full_grid() if args.full else sweep_grid(args.quick)
    if args.what in ("scale", "all"):
        cells += scale_grid(args.workers, args.quick)
    for cell in cells:
        for seed in args.seeds:
            s = run_job(cell, seed, args.steps, out, args.timeout, code, args.quick, args.keep_commit)
            runs = [r for r in runs if (r["key"], r["seed"]) != (s["key"], s["seed"])] + [s]
            store.write_text(json.dumps({"runs": runs}, indent=1))
    if not runs:
        sys.exit(f"heterogeneity: no runs in {out} to report on; run sweep or scale first")
    commits = sorted({r["commit"] for r in runs})
    m = provenance.machine()
    meta = {"command": provenance.script_command("heterogeneity.py", argv if argv is not None else sys.argv[1:]),
            "commit": ", ".join(commits), "report_commit": code, "date": provenance.now(),
            "machine": f"{m['host']} ({m['cpus']} CPUs, {m['platform']}, Python {m['python']}, torch {m['torch']}, "
                       f"load average at start {m['load_average_at_start']})",
            "setup": SETUP, "left_out": LEFT_OUT, "steps": args.steps, "seeds": args.seeds, "workers": args.workers,
            "quick": args.quick}
    write_report({"meta": meta, "runs": runs}, Path(args.to) if args.to and not args.quick else out)
    if args.quick:
        numbers = {f"{r['key']}/seed{r['seed']}": {k: r[k] for k in QUICK_METRICS} for r in runs}
        for where in [out] + ([Path(args.to)] if args.to else []):
            provenance.write_reference(where / "quick.json", {k: meta[k] for k in ("command", "commit", "date")},
                                       numbers)
            print(f"quick.json in {provenance.rel(where)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

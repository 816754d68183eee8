"""Predicted step times on a described network (the alpha-beta model of dsgd.cost), fitted to this machine.

    python -m dsgd.bench cost predict --nodes 4 --ranks-per-node 8 --inter-bandwidth 10 --model resnet50
    python -m dsgd.bench cost calibrate --ranks 4
    python -m dsgd.bench cost papers

predict    price one step of C-SGD (allreduce), local SGD (H amortised), no communication, and D-SGD on
           each topology, with the plans the trainer makes (dsgd.comm.plan.make_plan); JSON out
calibrate  run `python -m dsgd.bench mix --json` under mpirun (dsgd.launcher) at several sizes, or read
           such reports, and fit time = a + b * bytes for ring gossip and for the allreduce: this
           machine's one link class as alpha and beta, with each point's relative fit error
papers     published decentralized-vs-allreduce speed-ups beside the model's, on the papers' setups
Bad input prints one line on stderr and exits 2.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import topologies
from dsgd.cost import Cluster, Link, Stragglers, fit, papers, predict_step
from dsgd.cost.price import DEFAULT_STEPS
from dsgd.cost.traffic import ring_allreduce_seconds

PROG = "python -m dsgd.bench cost"
GBIT = 1e9 / 8  # bytes per second in one gigabit per second
MODELS = {"resnet20": 270_000, "resnet56": 850_000, "resnet18": 11_000_000, "resnet50": 25_600_000}  # parameters
DEFAULT_TOPOLOGIES = ("ring", "torus", "exponential", "one-peer-exponential", "complete")
DEFAULT_NUMEL = (65_536, 262_144, 1_048_576, 4_194_304)  # fp32 elements: 256 KiB to 16 MiB
NOTES = [
    "seconds and bytes are per step; step_s includes compute: a synchronous recursion in which an allreduce "
    "waits for the slowest rank and a gossip step for the slowest rank it receives from (dsgd/cost/timeline.py)",
    "a message costs alpha + bytes / beta; a rank's concurrent messages pay one alpha and share beta, per "
    "direction; with a shared NIC a node's inter-node bytes add up (dsgd/cost/traffic.py)",
    "C-SGD is a ring allreduce: 2 (p - 1) alpha + 2 (p - 1) / p * M / beta on the slowest link class",
    "speedup_vs_allreduce = the C-SGD step time / this step time (above 1: faster than allreduce)",
]


def _number(kind, low: float, strict: bool):
    """An argparse type: KIND(text), finite and above (or at) LOW."""
    def parse(text: str):
        value = kind(text)
        if not (value > low if strict else value >= low) or value != value or abs(value) == float("inf"):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int, positive, non_negative = _number(int, 0, True), _number(float, 0, True), _number(float, 0, False)


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="predicted step time per algorithm on a described cluster",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--nodes", type=positive_int, default=4, help="machines")
    p.add_argument("--ranks-per-node", type=positive_int, default=8, help="MPI ranks (GPUs) per machine")
    p.add_argument("--workers-per-rank", type=positive_int, default=1, help="K workers trained by each rank")
    p.add_argument("--intra-bandwidth", type=positive, default=400.0, help="intra-node link, Gb/s (gigabits)")
    p.add_argument("--intra-latency", type=non_negative, default=5.0, help="intra-node latency, microseconds")
    p.add_argument("--inter-bandwidth", type=positive, default=10.0, help="inter-node link (NIC), Gb/s")
    p.add_argument("--inter-latency", type=non_negative, default=50.0, help="inter-node latency, microseconds")
    p.add_argument("--nic", choices=("per-node", "per-rank"), default="per-node",
                   help="per-node: a node's ranks share one NIC; per-rank: each rank has its own")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--model", choices=sorted(MODELS), default="resnet20", help="fp32 parameters of a preset")
    size.add_argument("--model-bytes", type=positive, help="bytes of one model (instead of --model)")
    p.add_argument("--compute-ms", type=non_negative, default=50.0, help="a rank's compute time per step, ms")
    p.add_argument("--straggler-sigma", type=non_negative, default=0.0, help="lognormal jitter of compute times")
    p.add_argument("--straggler-prob", type=non_negative, default=0.0, help="chance a rank straggles on a step")
    p.add_argument("--straggler-slowdown", type=float, default=1.0, help="compute factor of a straggling step")
    p.add_argument("--seed", type=int, default=0, help="seed of the compute-time draws")
    p.add_argument("--topology", nargs="+", default=list(DEFAULT_TOPOLOGIES), metavar="T",
                   help="D-SGD topologies, as topologies.from_spec takes them")
    p.add_argument("--local-steps", type=positive_int, nargs="+", default=[8], metavar="H", help="local SGD periods")
    p.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, help="steps simulated (whole periods)")
    p.set_defaults(run=run_predict)


def cluster_from(args) -> Cluster:
    return Cluster(nodes=args.nodes, ranks_per_node=args.ranks_per_node, workers_per_rank=args.workers_per_rank,
                   intra=Link(args.intra_latency * 1e-6, args.intra_bandwidth * GBIT),
                   inter=Link(args.inter_latency * 1e-6, args.inter_bandwidth * GBIT), nic_shared=args.nic == "per-node")


def run_predict(args) -> dict:
    for spec in args.topology:
        if spec.split(":", 1)[0] not in topologies.FAMILIES:
            raise ValueError(f"unknown topology {spec!r} (known: {', '.join(topologies.FAMILIES)})")
    cluster = cluster_from(args)
    stragglers = Stragglers(args.straggler_sigma, args.straggler_prob, args.straggler_slowdown, args.seed)
    model_bytes = args.model_bytes if args.model_bytes is not None else MODELS[args.model] * 4
    algorithms = ["csgd", *(f"local:{h}" for h in args.local_steps), "identity",
                  *(f"dsgd:{spec}" for spec in args.topology)]
    results, skipped = [], []
    for algorithm in algorithms:
        try:
            cost = predict_step(algorithm, cluster, model_bytes, args.compute_ms * 1e-3, stragglers, args.steps)
        except topologies.TopologyError as e:  # a known family not defined on this many workers
            skipped.append({"algorithm": algorithm, "reason": str(e)})
            continue
        results.append(vars(cost) | {"kinds": list(cost.kinds)})
    allreduce = results[0]["step_s"]
    for r in results:
        r["speedup_vs_allreduce"] = allreduce / r["step_s"] if r["step_s"] > 0 else None
    return {"command": "predict", "ranks": cluster.size, "nodes": cluster.nodes,
            "ranks_per_node": cluster.ranks_per_node, "workers_per_rank": cluster.workers_per_rank,
            "intra": vars(cluster.intra), "inter": vars(cluster.inter), "nic_shared": cluster.nic_shared,
            "model_bytes": model_bytes, "compute_s": args.compute_ms * 1e-3, "stragglers": vars(stragglers),
            "steps": args.steps, "results": results, "skipped": skipped, "notes": NOTES}


def add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="fit alpha and beta to `dsgd.bench mix` runs on this machine",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ranks", type=positive_int, default=4, help="ranks of the mix job (>= 3: the ring needs them)")
    p.add_argument("--numel", type=positive_int, nargs="+", default=list(DEFAULT_NUMEL), metavar="M",
                   help="fp32 elements per rank, one point each")
    p.add_argument("--repeats", type=positive_int, default=10, help="timed repetitions per point (mix --repeats)")
    p.add_argument("--timeout", type=positive, default=180.0, help="seconds before the mix job is killed")
    p.add_argument("--input", nargs="+", metavar="FILE",
                   help="read `dsgd.bench mix --json` reports instead of running one")
    p.add_argument("--save-mix", metavar="FILE", help="also write the mix report that was run here")
    p.set_defaults(run=run_calibrate)


def mix_report(args) -> tuple:
    """(mix reports, the command that made them or None)."""
    if args.input:
        return [json.loads(Path(f).read_text()) for f in args.input], None
    from dsgd import launcher
    if args.ranks < 3:
        raise ValueError(f"--ranks must be >= 3 (a ring), got {args.ranks}")
    mix = ["-m", "dsgd.bench", "mix", "--json", "--topology", "ring", "complete", "--warmup", "2",
           "--repeats", str(args.repeats), "--numel", *map(str, args.numel)]
    res = launcher.run(args.ranks, mix, timeout=args.timeout, threads=1)
    lines = [line for line in (res.stdout or "").splitlines() if line.startswith("{")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"the mix job failed (exit {res.returncode}): {(res.stdout or '')[-500:]}")
    if args.save_mix:
        Path(args.save_mix).write_text(lines[-1] + "\n")
    return [json.loads(lines[-1])], launcher.mpirun_command(args.ranks, mix, threads=1)


def fitted_link(line: dict, to_link) -> dict:
    """alpha and beta from a fitted line, or none with the reason when the times did not grow with the
    bytes (on a busy machine noise can outweigh the transfer time of small sizes): no bandwidth follows."""
    if line["b_s_per_byte"] <= 0:
        return {"alpha_s": None, "beta_bytes_per_s": None,
                "unfit": "the times did not grow with the bytes (noise larger than the transfer time); "
                         "measure larger --numel sizes, more --repeats, or on an idle machine"}
    return to_link(line)


def cross_check(points: list, fits: dict, size: int) -> list:
    """Allreduce times predicted with the link fitted to gossip (dsgd_s), beside the measured ones
    (none when that link could not be fitted)."""
    link = fits["sparse"]["dsgd_s"]
    if "unfit" in link:
        return []
    machine = Link(max(link["alpha_s"], 0.0), link["beta_bytes_per_s"])  # a fit may put alpha below 0
    cluster = Cluster(nodes=1, ranks_per_node=size, intra=machine, inter=machine)
    rows = []
    for p in points:
        if p["kind"] == "average":
            predicted = ring_allreduce_seconds(cluster, p["buffer_bytes"])
            rows.append({"numel": p["numel"], "predicted_s": predicted, "measured_s": p["dsgd_s"],
                         "relative_error": (predicted - p["dsgd_s"]) / p["dsgd_s"]})
    return rows


def run_calibrate(args) -> dict:
    reports, command = mix_report(args)
    sizes = {r["world_size"] for r in reports}
    if len(sizes) != 1:
        raise ValueError(f"the mix reports have different world sizes {sorted(sizes)}; fit one size at a time")
    size = sizes.pop()
    points = [{"kind": r["kind"], "topology": r["topology"], "numel": r["numel"], "buffer_bytes": r["numel"] * 4,
               "bytes_sent_per_rank": r["bytes_sent_per_rank"], "dsgd_s": r["dsgd_s"], "raw_s": r["raw_s"]}
              for report in reports for r in report["results"] if r["kind"] in ("sparse", "average")]
    fits = {}
    for kind, x_key, to_link in (("sparse", "bytes_sent_per_rank", fit.sparse_link),
                                 ("average", "buffer_bytes", lambda line: fit.allreduce_link(line, size))):
        mine = [p for p in points if p["kind"] == kind]
        fits[kind] = {}
        for side in ("dsgd_s", "raw_s"):
            line = fit.fit_line([p[x_key] for p in mine], [p[side] for p in mine])
            fits[kind][side] = line | fitted_link(line, to_link) | {"x": x_key}
    unfit = [f"{kind} {side}: {f['unfit']}" for kind in fits for side, f in fits[kind].items() if "unfit" in f]
    for line in unfit:
        print(f"{PROG} calibrate: warning: no link fitted for {line}", file=sys.stderr)
    here = os.getcwd() + os.sep   # paths inside the checkout are shown relative to it, as they run from there
    if command is not None:  # None: fitted to --input reports, which name their own runs
        command = [os.path.relpath(a) if os.path.isabs(a) and a.startswith(here) else a for a in command]
    return {"command": "calibrate", "world_size": size, "mpirun": command, "cross_check": cross_check(points, fits, size),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "load_average": os.getloadavg()[0], "mix_dates": [r["date"] for r in reports],
            "mix_load_averages": [r["load_average"] for r in reports], "points": points, "fits": fits,
            "notes": ["sparse: ring gossip, x = bytes a rank sends (2 buffers); alpha = a, beta = 1 / b",
                      "average: allreduce, x = buffer bytes M; alpha = a / (2 (p - 1)), beta = 2 (p - 1) / (p b)",
                      "dsgd_s: the Mixer's step (what training pays); raw_s: plain mpi4py moving the same bytes",
                      "relative_error: (fit - measured) / measured, per point in the order of points",
                      "cross_check: the allreduce times the model predicts from the gossip fit's alpha and beta "
                      "(one node, one link class), against the measured ones"]}


def run_papers(args) -> dict:
    rows = [papers.price(s) for s in papers.scenarios()]
    return {"command": "papers", "results": rows, "notes": NOTES}


def parse_args(argv: list) -> argparse.Namespace:
    ap = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="{predict,calibrate,papers}")
    add_predict(sub)
    add_calibrate(sub)
    sub.add_parser("papers", help="published speed-ups beside the model's").set_defaults(run=run_papers)
    return ap.parse_args(argv)


def main(argv: list | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        report = args.run(args)
    except ValueError as e:  # bad input, TopologyError included: one line, no traceback
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, TimeoutError, OSError) as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

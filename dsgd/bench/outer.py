"""What an outer step costs: DiLoCo's step where the outer step runs against a plain local step, and the
peak bytes per step of streaming DiLoCo against DiLoCo, side by side in one run.

    python -m dsgd.bench outer --json                                   # 4 workers in this process
    mpirun -np 4 python -m mpi4py -m dsgd.bench outer --json            # one worker per rank

Three optimizers step the same model from the same weights on the same batches, alternated step by
step: local SGD that never averages (the plain local step), DiLoCo with period H, and streaming
DiLoCo with F fragments. `outer_step_s` is DiLoCo's time on its sync steps (the inner step, the
pseudo-gradient, its average, the outer Nesterov step and the restart from the anchor), beside
`local_step_s` on the same steps; the bytes are each worker's per step, as the trainer counts them.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from dsgd.bench.common import load_average, median, now, positive, set_threads, step_comparison_options


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dsgd.bench outer", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--period", type=positive, default=4, help="H of DiLoCo and streaming DiLoCo")
    ap.add_argument("--fragments", type=positive, default=4, help="F of streaming DiLoCo")
    ap.add_argument("--workers", type=positive, default=4, help="workers in one process (without mpirun)")
    step_comparison_options(ap)
    args = ap.parse_args(argv)
    if args.repeats < args.period:  # every `period` consecutive steps hold one outer step
        ap.error(f"--repeats {args.repeats} must be at least --period {args.period}: the timed steps must include "
                 f"an outer step")
    return args


def model() -> torch.nn.Module:
    """The byte-level GPT the language-model experiments train (context 64)."""
    from dsgd.models import GPT
    return GPT(64)


def sides(args):
    import dsgd
    from mpi4py import MPI
    world = dsgd.start("mpi" if MPI.COMM_WORLD.size > 1 else "self",
                       workers_per_rank=1 if MPI.COMM_WORLD.size > 1 else args.workers)
    K, steps = world.workers_per_rank, args.warmup + args.repeats
    torch.manual_seed(0)
    first = model()
    algorithms = {"local": dsgd.algorithms.local_sgd(2 ** 40),
                  "diloco": dsgd.algorithms.diloco(args.period),
                  "streaming": dsgd.algorithms.streaming_diloco(args.period, args.fragments, delay=1)}
    data = torch.Generator().manual_seed(world.rank)
    batches = [[torch.randint(0, 256, (args.batch_size, 65), generator=data) for _ in range(K)] for _ in range(steps)]
    runs = {}
    for name, algorithm in algorithms.items():
        models = [model() for _ in range(K)]
        for m in models:
            m.load_state_dict(first.state_dict())
        opts = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in models]
        opt = dsgd.DecentralizedOptimizer(opts if K > 1 else opts[0], models if K > 1 else models[0], algorithm,
                                          world)
        runs[name] = (models, opt)

    def step(name, t):
        models, opt = runs[name]
        opt.zero_grad()
        for m, chunk in zip(models, batches[t]):
            logits = m(chunk[:, :-1])
            F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten()).backward()
        before = opt.stats["bytes_sent"]
        opt.step()
        return opt.stats["bytes_sent"] - before
    return world, step, runs


def run(args: argparse.Namespace) -> dict:
    import time
    set_threads(args.threads)
    started, load = now(), load_average()
    world, step, runs = sides(args)
    args.rank = world.rank
    times = {name: [] for name in runs}
    sent = {name: [] for name in runs}
    names = list(runs)
    for t in range(args.warmup + args.repeats):
        for i in range(len(names)):
            name = names[(i + t) % len(names)]  # rotate who goes first
            world.comm.barrier()
            t0 = time.perf_counter()
            nbytes = step(name, t)
            seconds = world.comm.allreduce_max(time.perf_counter() - t0)
            if t >= args.warmup:
                times[name].append((t, seconds))
                sent[name].append(nbytes)
    for _, opt in runs.values():
        opt.finish()
    world.close()
    sync = [(t + 1) % args.period == 0 for t, _ in times["diloco"]]
    outer = median([s for (t, s), on in zip(times["diloco"], sync) if on])
    local_same = median([s for (t, s), on in zip(times["local"], sync) if on])
    local_all = median([s for _, s in times["local"]])
    peak_d, peak_s = max(sent["diloco"]), max(sent["streaming"])
    return {"benchmark": "outer", "ranks": world.size, "workers": world.n_workers, "model": "gpt (context 64)",
            "batch_size": args.batch_size, "period": args.period, "fragments": args.fragments,
            "torch_threads": torch.get_num_threads(), "date": started, "load_average": load, "warmup": args.warmup,
            "repeats": args.repeats, "outer_step_s": outer, "local_step_s": local_same, "local_step_all_s": local_all,
            "outer_over_local": outer / local_same, "diloco_step_mean_s": sum(s for _, s in times["diloco"]) /
            len(times["diloco"]), "streaming_step_mean_s": sum(s for _, s in times["streaming"]) / len(times["streaming"]),
            "diloco_peak_bytes_per_step": peak_d, "streaming_peak_bytes_per_step": peak_s,
            "streaming_over_diloco_peak": peak_s / peak_d if peak_d else None,
            "diloco_bytes_per_step_mean": sum(sent["diloco"]) / len(sent["diloco"]),
            "streaming_bytes_per_step_mean": sum(sent["streaming"]) / len(sent["streaming"]),
            "notes": ["seconds per step, medians over repetitions, each step the slowest rank's; the three sides "
                      "alternate step by step; outer_step_s is DiLoCo on its sync steps, local_step_s local SGD "
                      "(never averaging) on the same steps; bytes per worker per step as the trainer counts them"]}


def table(r: dict) -> str:
    return "\n".join([
        f"outer: {r['ranks']} rank(s), {r['workers']} workers, {r['model']}, batch {r['batch_size']}, H {r['period']}, "
        f"F {r['fragments']}, {r['torch_threads']} torch threads, {r['date']}, load {r['load_average']:.1f}",
        f"DiLoCo step with the outer step  {r['outer_step_s'] * 1e3:8.3f} ms",
        f"plain local step (same steps)    {r['local_step_s'] * 1e3:8.3f} ms   ratio {r['outer_over_local']:.3f}",
        f"peak bytes per step: DiLoCo {r['diloco_peak_bytes_per_step']:.0f}, streaming "
        f"{r['streaming_peak_bytes_per_step']:.0f} ({r['streaming_over_diloco_peak']:.3f} of DiLoCo's)",
        f"mean bytes per step: DiLoCo {r['diloco_bytes_per_step_mean']:.0f}, streaming "
        f"{r['streaming_bytes_per_step_mean']:.0f}",
    ])


def main(argv: list[str] | None = None) -> int:
    import json
    import sys
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = run(args)
    if args.rank == 0:
        print(json.dumps(report) if args.json else table(report), flush=True)
    return 0

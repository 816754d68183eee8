"""The library's optimizer wrapper against what a PyTorch user would run instead, side by side.

    python -m dsgd.bench library --json                                  # one rank: against bare torch.optim
    mpirun -np 4 python -m mpi4py -m dsgd.bench library --vs postlocal --json

One rank: the same model, initial weights and batches stepped by a plain SGD loop and by the same
loop with its optimizer wrapped in `dsgd.DecentralizedOptimizer` (C-SGD over one worker: its
mixing step is the identity, so what is timed is the wrapper itself), steps alternated (A B, then
B A). `--vs postlocal`: local SGD with period H through the wrapper against PyTorch's
PostLocalSGDOptimizer with a PeriodicModelAverager (averaging from the first period) on
torch.distributed's gloo group, each step's time the slowest rank's.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from dsgd.bench.common import load_average, median, now, positive, set_threads, step_comparison_options

TARGETS = {"torch-optim": 1.03, "postlocal": 1.0}


def model() -> torch.nn.Module:
    """The trainer's small CNN on 28 x 28 grey images (10 classes), without normalization."""
    from dsgd.models import build_model
    return build_model("cnn", 1, 10, 28, norm="none")


def figures(times: dict[str, list[float]], vs: str) -> dict:
    dsgd_s, peer_s = median(times["dsgd"]), median(times["peer"])
    ratio = dsgd_s / peer_s
    return {"dsgd_s": dsgd_s, "peer_s": peer_s, "ratio": ratio, "target": TARGETS[vs], "met": ratio <= TARGETS[vs]}


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dsgd.bench library", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--vs", choices=sorted(TARGETS), default="torch-optim")
    ap.add_argument("--period", type=positive, default=4, help="local SGD's H (--vs postlocal)")
    step_comparison_options(ap)
    return ap.parse_args(argv)


def sides(args):
    """(world, {"dsgd": step, "peer": step}, slowest): each step function does one training step."""
    import dsgd
    steps = args.warmup + args.repeats
    if args.vs == "torch-optim":
        world = dsgd.start("self")
    else:
        world = dsgd.start("torch")
    torch.manual_seed(0)
    ours, theirs = model(), model()
    theirs.load_state_dict(ours.state_dict())
    data = torch.Generator().manual_seed(world.rank)
    batches = [(torch.randn(args.batch_size, 1, 28, 28, generator=data),
                torch.randint(0, 10, (args.batch_size,), generator=data)) for _ in range(steps)]
    algorithm = dsgd.algorithms.csgd() if args.vs == "torch-optim" else dsgd.algorithms.local_sgd(args.period)
    opt = dsgd.DecentralizedOptimizer(torch.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9), ours, algorithm,
                                      world)
    if args.vs == "torch-optim":
        peer_opt = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)
    else:
        from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager
        from torch.distributed.optim import PostLocalSGDOptimizer
        peer_opt = PostLocalSGDOptimizer(torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9),
                                         PeriodicModelAverager(period=args.period, warmup_steps=0))

    def step(m, o, t):
        x, y = batches[t]
        o.zero_grad()
        F.cross_entropy(m(x), y).backward()
        o.step()
    return world, {"dsgd": lambda t: step(ours, opt, t), "peer": lambda t: step(theirs, peer_opt, t)}


def run(args: argparse.Namespace) -> dict:
    import time
    set_threads(args.threads)
    started, load = now(), load_average()
    world, step = sides(args)
    args.rank = world.rank
    times = {"dsgd": [], "peer": []}
    for t in range(args.warmup + args.repeats):
        order = ("dsgd", "peer") if t % 2 == 0 else ("peer", "dsgd")
        for name in order:
            world.comm.barrier()
            t0 = time.perf_counter()
            step[name](t)
            seconds = world.comm.allreduce_max(time.perf_counter() - t0)  # the slowest rank's step
            if t >= args.warmup:
                times[name].append(seconds)
    world.close()
    peer = "torch.optim.SGD (bare loop)" if args.vs == "torch-optim" else \
        f"PostLocalSGDOptimizer + PeriodicModelAverager(period={args.period})"
    ours = "DecentralizedOptimizer(SGD, csgd) on one worker" if args.vs == "torch-optim" else \
        f"DecentralizedOptimizer(SGD, local_sgd({args.period}))"
    return {"benchmark": "library", "vs": args.vs, "ranks": world.size, "model": "cnn (norm none)",
            "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(), "date": started,
            "load_average": load, "warmup": args.warmup, "repeats": args.repeats, "dsgd_side": ours,
            "peer_side": peer, **figures(times, args.vs),
            "notes": ["seconds per step, medians over repetitions, each step the slowest rank's; the sides "
                      "alternate step by step; ratio = dsgd_s / peer_s"]}


def table(r: dict) -> str:
    return "\n".join([
        f"library: {r['ranks']} rank(s), {r['model']}, batch {r['batch_size']}, {r['torch_threads']} torch threads, "
        f"{r['date']}, load {r['load_average']:.1f}",
        f"dsgd  {r['dsgd_s'] * 1e3:8.3f} ms   {r['dsgd_side']}",
        f"peer  {r['peer_s'] * 1e3:8.3f} ms   {r['peer_side']}",
        f"ratio {r['ratio']:.3f} (target <= {r['target']}: {'met' if r['met'] else 'NOT met'})",
    ])


def main(argv: list[str] | None = None) -> int:
    import json
    import sys
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = run(args)
    if args.rank == 0:  # known once the world is started
        print(json.dumps(report) if args.json else table(report), flush=True)
    return 0

"""dsgd's local SGD and C-SGD against PyTorch's own: PeriodicModelAverager and DistributedDataParallel.

    mpirun -np 4 --oversubscribe python -m mpi4py -m dsgd.bench peers --json

Every side trains the same model from the same weights on the same batches (the trainer's
local_batch, worker = rank) with the same SGD settings, on CPU over MPI or gloo:

  dsgd-local-mpi, dsgd-local-torch   the trainer's step (Run.train_step) for local SGD with H steps,
                                     its Mixer over MPICommunicator / TorchDistCommunicator (gloo)
  torch-averager                     zero_grad, forward, backward, SGD step, then
                                     PeriodicModelAverager(period=H).average_parameters
  dsgd-csgd-mpi, dsgd-csgd-torch     the trainer's step for C-SGD (gradients averaged every step)
  torch-ddp                          the same plain loop on DistributedDataParallel (gloo)
  dsgd-csgd-fp16-mpi                 C-SGD with --compress fp16 (error feedback, allgathered payloads,
                                     their exact mean)
  dsgd-csgd-fp16-half-mpi,           C-SGD with --compress fp16:sum=half (error feedback, one allreduce
  dsgd-csgd-fp16-half-torch          of the payloads summed in half precision) over MPI / gloo
  torch-ddp-fp16                     DDP with PyTorch's fp16_compress_hook
  dsgd-csgd-powersgd-mpi             C-SGD with --compress powersgd:rank=2
  (PyTorch's powerSGD_hook is not a side: beside the other DDP models of this benchmark its
  collectives mismatched across ranks; alone it runs. dsgd's PowerSGD is compared with dense C-SGD.)

(PostLocalSGDOptimizer is the averager called from the optimizer's step: the same work.)
A repetition is a window of H steps, holding exactly one model average for the local SGD
sides; sides take turns window by window after a barrier, the first side rotating from
window to window. A window's time is the max over ranks; step_s is the median window time / H,
and a ratio is the median over windows of the two sides' times in the same window.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from mpi4py import MPI
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager
from torch.nn.parallel import DistributedDataParallel

from dsgd.bench.common import build_run, finish, load_average, non_negative, now, positive, set_threads
from dsgd.bench.reports import PEERS_SIDES, peers_comparisons, peers_results
from dsgd.comm import Mixer
from dsgd.comm.mpi import MPICommunicator
from dsgd.comm.torch_dist import TorchDistCommunicator, init_process_group
from dsgd.models import MODELS, build_model

LR, MOMENTUM, SEED = 0.05, 0.9, 0
COMPRESSED = {  # name: (flags, communicator)
    "dsgd-csgd-fp16-mpi": (["--compress", "fp16"], "mpi"),
    "dsgd-csgd-fp16-half-mpi": (["--compress", "fp16:sum=half"], "mpi"),
    "dsgd-csgd-fp16-half-torch": (["--compress", "fp16:sum=half"], "torch"),
    "dsgd-csgd-powersgd-mpi": (["--compress", "powersgd:rank=2"], "mpi")}
NOTES = [
    "step_s: seconds per training step, max over ranks per window of H steps, median over windows, / H",
    "samples_per_s = world_size x batch_size / step_s",
    "ratio: median over windows of (dsgd side's window time / PyTorch side's time in the same window); "
    "ratio_quartiles: 25th and 75th percentiles of those per-window ratios; met: ratio <= target",
    "norm none by default: with BatchNorm dsgd also averages running statistics and DDP broadcasts them, "
    "so the sides would not do the same work",
]


class PlainSide:
    """The loop PyTorch users write, on a model with the trainer's initial weights."""

    def __init__(self, run, wrap: str, local_steps: int, hook: str = ""):
        self.run, self.rank = run, run.comm.rank
        data = run.train_set
        self.model = build_model(run.cfg.model.model, data.in_channels, data.num_classes, data.image_size,
                                 norm=run.cfg.model.norm)
        self.model.load_state_dict(run.workers.models[0].state_dict())
        self.model.train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        # each DDP its own group: a hook's collectives never interleave with another side's
        group = dist.new_group() if wrap == "ddp" else None
        self.net = DistributedDataParallel(self.model, process_group=group) if wrap == "ddp" else self.model
        if hook == "fp16":
            self.net.register_comm_hook(group, default_hooks.fp16_compress_hook)

        self.averager = PeriodicModelAverager(period=local_steps) if wrap == "averager" else None

    def step(self, t: int) -> None:
        x, y = self.run.batch_of(t)(self.rank)
        self.opt.zero_grad()
        F.cross_entropy(self.net(x), y).backward()
        self.opt.step()
        if self.averager is not None:
            self.averager.average_parameters(self.model.parameters())


def trainer_flags(args, algorithm: str) -> list[str]:
    return ["--algorithm", algorithm, "--local-steps", str(args.local_steps), "--model", args.model,
            "--norm", args.norm, "--batch-size", str(args.batch_size), "--lr", str(LR), "--momentum", str(MOMENTUM),
            "--seed", str(SEED), "--device", "cpu", "--threads", str(args.threads), "--vectorize", "off"]


def make_sides(args, world):
    """name -> (step function of t, trainer to close or None), in the order they take turns."""
    runs = {}
    for algorithm in ("local", "csgd"):
        runs[f"dsgd-{algorithm}-mpi"] = build_run(trainer_flags(args, algorithm),
                                                  Mixer(MPICommunicator(world.Dup()), workers_per_rank=1))
        runs[f"dsgd-{algorithm}-torch"] = build_run(trainer_flags(args, algorithm),
                                                    Mixer(TorchDistCommunicator("cpu"), workers_per_rank=1))
    for name, (flags, backend) in COMPRESSED.items():
        comm = MPICommunicator(world.Dup()) if backend == "mpi" else TorchDistCommunicator("cpu")
        runs[name] = build_run(trainer_flags(args, "csgd") + flags, Mixer(comm, 1))
    ref = runs["dsgd-local-mpi"][0]
    plain = {"torch-averager": PlainSide(ref, "averager", args.local_steps),
             "torch-ddp": PlainSide(ref, "ddp", args.local_steps),
             "torch-ddp-fp16": PlainSide(ref, "ddp", args.local_steps, hook="fp16")}
    sides = {}
    for name in (n for n in PEERS_SIDES if n in (args.sides or PEERS_SIDES)):
        if name in runs:
            run = runs[name][0]
            sides[name] = (lambda t, run=run: run.train_step(t))
        else:
            sides[name] = plain[name].step
    return sides, runs


def measure(args, world, sides) -> np.ndarray:
    """Seconds of each timed window (rows) for each side (columns), the max over ranks."""
    H = args.local_steps
    windows = args.warmup + args.repeats
    steps = list(sides.values())
    times = np.zeros((windows, len(steps)))
    for w in range(windows):
        for i in range(len(steps)):
            j = (i + w) % len(steps)  # rotate who goes first: no side always follows the same one
            step = steps[j]
            world.Barrier()
            t0 = MPI.Wtime()
            for t in range(w * H, (w + 1) * H):  # dsgd averages at its last step, the averager at its first
                step(t)
            times[w, j] = MPI.Wtime() - t0
    world.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
    return times[args.warmup:]


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dsgd.bench peers", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), default="cnn")
    ap.add_argument("--norm", choices=("bn", "gn", "none"), default="none")
    ap.add_argument("--batch-size", type=positive, default=32, help="local batch per rank")
    ap.add_argument("--local-steps", type=positive, default=4, help="H of local SGD (PeriodicModelAverager's period)")
    ap.add_argument("--repeats", type=positive, default=20, help="timed windows of H steps per side")
    ap.add_argument("--warmup", type=non_negative, default=2, help="untimed windows first")
    ap.add_argument("--threads", type=non_negative, default=1, help="torch threads per rank (0: torch's default)")
    ap.add_argument("--sides", nargs="+", choices=PEERS_SIDES, metavar="SIDE",
                    help="time only these sides (in turn order; default: every side), and report the comparisons "
                         "whose two sides are among them: fewer sides, shorter rounds, less drift of a shared "
                         f"machine's load within one. Sides: {', '.join(PEERS_SIDES)}")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    started, load = now(), load_average()  # as the measurement starts
    set_threads(args.threads)
    world = MPI.COMM_WORLD
    init_process_group("gloo")
    sides, runs = make_sides(args, world)
    times = measure(args, world, sides)
    for run_, tmp in runs.values():
        finish(run_, tmp)
    n, names = world.Get_size(), list(sides)
    steps_done = (args.warmup + args.repeats) * args.local_steps
    sent = {name: float(run_.mixer.worker_bytes_sent.mean()) for name, (run_, _) in runs.items()}
    results = peers_results(names, times, n, args.batch_size, args.local_steps, sent, steps_done)
    comparisons = peers_comparisons(names, times)
    return {"benchmark": "peers", "world_size": n, "device": "cpu", "backend": "gloo / MPI", "model": args.model,
            "norm": args.norm, "batch_size": args.batch_size, "local_steps": args.local_steps,
            "torch_threads": torch.get_num_threads(), "date": started, "load_average": load,
            "warmup": args.warmup, "repeats": args.repeats, "results": results, "comparisons": comparisons,
            "notes": list(NOTES)}


def table(report: dict) -> str:
    lines = [f"peers: {report['model']} (norm {report['norm']}), {report['world_size']} ranks, batch "
             f"{report['batch_size']}/rank, H={report['local_steps']}, {report['torch_threads']} torch threads, "
             f"{report['date']}, load {report['load_average']:.1f}",
             f"{'side':<18}{'ms/step':>10}{'samples/s':>11}"]
    lines += [f"{r['name']:<18}{r['step_s'] * 1e3:>10.2f}{r['samples_per_s']:>11.0f}" for r in report["results"]]
    for c in report["comparisons"]:
        q25, q75 = c["ratio_quartiles"]
        lines.append(f"{c['what']:<10} {c['dsgd']} / {c['baseline']} = {c['ratio']:.3f} [{q25:.2f}, {q75:.2f}] "
                     f"(target <= {c['target']}: {'met' if c['met'] else 'NOT met'})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = run(args)
    if MPI.COMM_WORLD.Get_rank() == 0:
        print(json.dumps(report) if args.json else table(report), flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

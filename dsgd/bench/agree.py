"""What the trainer's per-step agreement costs: D-SGD steps with and without the one-float allreduce.

    launch/dsgd-mpirun -np 4 --oversubscribe -- python -m dsgd.bench agree --json

Every training step, Run.agree_step makes one allreduce of one float so that every rank learns,
at the same step, of a non-finite loss or a stop signal on any rank. This benchmark times the
trainer's own Run.train_step (D-SGD, one worker per rank, over MPI) in these arms, on one Run
per model, switched window by window:

  agreed       the step as the trainer runs it
  none         the same step with the agreement replaced by nothing (what it would cost to drop it)
  every-K      the agreement made only at every K-th step (a stop would land up to K - 1 steps later,
               a failure would be noticed late: not what the trainer promises, measured for comparison)
  overlapped   the same allreduce started where the trainer makes it (MPI Iallreduce) and completed
               after the rule's step, so that it travels while the mixing step does

A repetition is a window of W steps of one arm after a barrier; the arm that goes first rotates
from window to window; a window's time is the max over ranks. The agreement alone is also timed:
one agreement after a barrier, max over ranks.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time

import numpy as np
import torch
from mpi4py import MPI

from dsgd.bench.common import build_run, finish, load_average, non_negative, now, positive, report_main, set_threads
from dsgd.bench.reports import agree_arms, agree_row, agree_topology
from dsgd.comm import Mixer
from dsgd.comm.mpi import MPICommunicator
from dsgd.train.loop import NonFiniteError

LR, MOMENTUM, SEED = 0.05, 0.9, 0
MODELS = ("mlp", "cnn")
NOTES = [
    "step_s[arm]: seconds per training step (Run.train_step, D-SGD, batch 32 per rank), the max over ranks "
    "of a window of W steps / W, median over windows",
    "agree_s: one Run.agree_step alone right after a barrier, max over ranks, median over repetitions",
    "agree_in_step_s: time spent inside Run.agree_step during the agreed arm's steps, per step, max over ranks "
    "per window, median over windows (it includes waiting for the slowest rank, which without the agreement "
    "the mixing step would wait instead)",
    "agree_ratio = agree_s / step_s[none]; agree_in_step_ratio = agree_in_step_s / step_s[agreed]",
    "slowdown[arm] = median over windows of (that arm's window time / the none arm's window time in the same "
    "round); slowdown_quartiles: 25th and 75th percentiles; 1.0 means the agreement costs nothing",
    "every-K changes what the trainer promises (stop and failure seen up to K - 1 steps late); it is measured "
    "only to show what it would save",
]


def trainer_flags(args, model: str, world_size: int) -> list[str]:
    steps = len(agree_arms(args.every)) * (args.warmup + args.repeats) * args.window
    return ["--algorithm", "dsgd", "--topology", agree_topology(world_size), "--model", model, "--norm", "none",
            "--batch-size", str(args.batch_size), "--lr", str(LR), "--momentum", str(MOMENTUM),
            "--seed", str(SEED), "--device", "cpu", "--threads", str(args.threads), "--vectorize", "off",
            "--epochs", str(max(1.0, steps / 100)), "--steps-per-epoch", "100"]


class AgreeClock:
    """Seconds spent inside Run.agree_step, wrapped around the trainer's own method."""

    def __init__(self, run):
        self.real, self.seconds = run.agree_step, 0.0

    def __call__(self, bad, what):
        t0 = time.perf_counter()
        self.real(bad, what)
        self.seconds += time.perf_counter() - t0


@contextlib.contextmanager
def shadowed(*changes):
    """(object, method name, replacement): instance attributes that shadow the trainer's methods for one
    window and are removed after it, so that every arm runs the same Run."""
    for obj, name, value in changes:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for obj, name, _ in changes:
            delattr(obj, name)


def every_k(run, k: int):
    """The real agreement at every k-th call only."""
    calls = [0]

    def agree(bad, what):
        calls[0] += 1
        if calls[0] % k == 0:
            type(run).agree_step(run, bad, what)
    return agree


def overlapped(run):
    """(agree_step, rule.step) that start the agreement's allreduce and complete it after the rule's step."""
    comm, real_step = run.comm, run.rule.step
    flight = {}

    def start(bad, what):
        signum = run.stop.received if run.stop is not None else 0
        code = 2.0 * (comm.rank + 1) if bad else (signum / 64.0 if signum else 0.0)
        buf = np.array([code], dtype=np.float64)
        flight.update(buf=buf, what=what, req=comm.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.MAX))

    def step(t, engine):
        pending = real_step(t, engine)
        flight["req"].Wait()
        worst = float(flight["buf"][0])
        if worst >= 2:
            raise NonFiniteError(f"{flight['what']} on rank {int(worst // 2) - 1}")
        if worst > 0:
            run.stop_signal = int(round(worst * 64))
            run.stop.agreed(run.stop_signal)
        return pending
    return start, step


def arms(run, args, clock: AgreeClock) -> dict:
    """arm name -> a context manager that puts the Run in that arm for one window."""
    start, step = overlapped(run)
    return {"agreed": lambda: shadowed((run, "agree_step", clock)),
            "none": lambda: shadowed((run, "agree_step", lambda bad, what: None)),
            f"every-{args.every}": lambda: shadowed((run, "agree_step", every_k(run, args.every))),
            "overlapped": lambda: shadowed((run, "agree_step", start), (run.rule, "step", step))}


def measure_model(args, world, model: str) -> dict:
    n = world.Get_size()
    run, tmp = build_run(trainer_flags(args, model, n), Mixer(MPICommunicator(world.Dup()), workers_per_rank=1))
    clock = AgreeClock(run)
    sides = arms(run, args, clock)
    names = list(sides)
    windows = args.warmup + args.repeats
    times = np.zeros((windows, len(names)))
    in_step = np.zeros(windows)
    alone = np.zeros(windows * args.window)
    t = 0
    for w in range(windows):
        for i in range(len(names)):
            j = (i + w) % len(names)  # rotate who goes first: no arm always follows the same one
            with sides[names[j]]():
                clock.seconds = 0.0
                world.Barrier()
                t0 = time.perf_counter()
                for _ in range(args.window):
                    run.train_step(t)
                    run.engine.finish()
                    t += 1
                times[w, j] = time.perf_counter() - t0
                if names[j] == "agreed":
                    in_step[w] = clock.seconds / args.window
        for r in range(args.window):
            world.Barrier()
            t0 = time.perf_counter()
            run.agree_step(False, "")
            alone[w * args.window + r] = time.perf_counter() - t0
    finish(run, tmp)
    for a in (times, in_step, alone):
        world.Allreduce(MPI.IN_PLACE, a, op=MPI.MAX)
    times, in_step, alone = times[args.warmup:], in_step[args.warmup:], alone[args.warmup * args.window:]
    return agree_row(model, agree_topology(n), names, times, in_step, alone, args.window)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dsgd.bench agree", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--batch-size", type=positive, default=32, help="local batch per rank")
    ap.add_argument("--window", type=positive, default=8, help="steps per timed window")
    ap.add_argument("--repeats", type=positive, default=30, help="timed windows per arm")
    ap.add_argument("--warmup", type=non_negative, default=2, help="untimed windows first")
    ap.add_argument("--every", type=positive, default=8, help="K of the every-K arm")
    ap.add_argument("--threads", type=non_negative, default=1, help="torch threads per rank (0: torch's default)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    started, load = now(), load_average()  # as the measurement starts
    set_threads(args.threads)
    world = MPI.COMM_WORLD
    results = [measure_model(args, world, model) for model in args.models]
    return {"benchmark": "agree", "world_size": world.Get_size(), "device": "cpu", "algorithm": "dsgd",
            "batch_size": args.batch_size, "window": args.window, "every": args.every,
            "torch_threads": torch.get_num_threads(), "date": started, "load_average": load,
            "warmup": args.warmup, "repeats": args.repeats, "arms": agree_arms(args.every), "results": results,
            "notes": list(NOTES)}


def table(report: dict) -> str:
    lines = [f"agree: D-SGD, {report['world_size']} ranks, batch {report['batch_size']}/rank, windows of "
             f"{report['window']} steps, {report['torch_threads']} torch threads, {report['date']}, "
             f"load {report['load_average']:.1f}"]
    for r in report["results"]:
        lines.append(f"{r['model']} ({r['topology']}): agreement alone {r['agree_s'] * 1e6:.0f} us = "
                     f"{r['agree_ratio']:.2%} of a step; inside the step {r['agree_in_step_s'] * 1e6:.0f} us = "
                     f"{r['agree_in_step_ratio']:.2%}")
        for arm in report["arms"]:
            extra = ""
            if arm in r["slowdown"]:
                q25, q75 = r["slowdown_quartiles"][arm]
                extra = f"  x{r['slowdown'][arm]:.3f} of none [{q25:.2f}, {q75:.2f}]"
            lines.append(f"  {arm:<12}{r['step_s'][arm] * 1e3:>9.3f} ms/step{extra}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return report_main(argv, parse_args, run, table, rank=MPI.COMM_WORLD.Get_rank())


if __name__ == "__main__":
    sys.exit(main())

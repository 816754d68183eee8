"""What elastic mode costs on a step without failures: the same D-SGD step in a plain and in an
elastic world, side by side.

    mpirun --with-ft ulfm -np 4 python -m mpi4py -m dsgd.bench elastic --json

Both sides train the trainer's small CNN from the same weights on the same batches, D-SGD on a
ring with momentum; the elastic side adds what every elastic step does (a copy of the rank's
state before the step, one fault-tolerant agreement after it). Steps alternate (A B, then B A);
each step's time is the slowest rank's. With --kill, the last rank then kills itself (SIGKILL) as an
elastic step starts, having written the time; the report adds the seconds from the kill to the end
of the step the survivors redo (one clock: the ranks must share a host, or synchronized clocks).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from dsgd.bench.common import load_average, median, now, set_threads, step_comparison_options
from dsgd.bench.library import model


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dsgd.bench elastic", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--topology", default="ring")
    ap.add_argument("--kill", action="store_true", help="then kill the last rank and time the recovery")
    step_comparison_options(ap)
    args = ap.parse_args(argv)
    from mpi4py import MPI
    from dsgd.comm import ulfm
    problem = ulfm.fault_tolerance_problem(MPI)  # at start, before any rank builds a world
    if problem is not None:
        if MPI.COMM_WORLD.rank == 0:  # said once for the job
            ap.error(problem)
        raise SystemExit(2)
    return args


def sides(args):
    """(plain world, {"plain": step, "elastic": step}, the elastic optimizer): each step function
    does one training step."""
    import dsgd
    worlds = {"plain": dsgd.start("mpi"), "elastic": dsgd.start("mpi", elastic=True)}
    torch.manual_seed(0)
    first = model()
    rank = worlds["plain"].rank
    data = torch.Generator().manual_seed(rank)
    batches = [(torch.randn(args.batch_size, 1, 28, 28, generator=data),
                torch.randint(0, 10, (args.batch_size,), generator=data)) for _ in range(args.warmup + args.repeats)]
    step, opts = {}, {}
    for name, world in worlds.items():
        m = model()
        m.load_state_dict(first.state_dict())
        opt = opts[name] = dsgd.DecentralizedOptimizer(torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), m,
                                                       dsgd.algorithms.dsgd(args.topology), world)

        def one(t, m=m, opt=opt):
            x, y = batches[t]
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
        step[name] = one
    return worlds["plain"], step, opts["elastic"]


def kill_and_recover(world, step, opt, t: int) -> dict:
    """The last rank writes the time and kills itself as elastic step T starts; the survivors redo it.
    On the survivors: seconds from the kill to the end of the redone step, and the recovery's own."""
    import os
    import signal
    import tempfile
    from pathlib import Path
    stamp = Path(world.comm.allgather_object(tempfile.mktemp(prefix="dsgd-bench-elastic-"))[0])
    world.comm.barrier()
    if world.rank == world.size - 1:
        stamp.write_text(repr(time.time()))
        os.kill(os.getpid(), signal.SIGKILL)
    step["elastic"](t)
    done = time.time()
    while not stamp.is_file():   # written before the kill, so already there
        time.sleep(0.01)
    killed = float(stamp.read_text())
    change = opt.membership[-1]
    return {"kill_to_next_step_s": done - killed, "recovery_s": change.seconds,
            "workers_after_kill": change.workers_after}


def run(args: argparse.Namespace) -> dict:
    set_threads(args.threads)
    started, load = now(), load_average()
    world, step, elastic_opt = sides(args)
    args.rank = world.rank
    times = {"plain": [], "elastic": []}
    for t in range(args.warmup + args.repeats):
        for name in (("plain", "elastic") if t % 2 == 0 else ("elastic", "plain")):
            world.comm.barrier()
            t0 = time.perf_counter()
            step[name](t)
            seconds = world.comm.allreduce_max(time.perf_counter() - t0)  # the slowest rank's step
            if t >= args.warmup:
                times[name].append(seconds)
    plain_s, elastic_s = median(times["plain"]), median(times["elastic"])
    killed = kill_and_recover(world, step, elastic_opt, args.warmup + args.repeats - 1) if args.kill else {}
    args.rank = elastic_opt.world.rank
    return {**killed, "benchmark": "elastic", "ranks": world.size, "model": "cnn (norm none)", "topology": args.topology,
            "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(), "date": started,
            "load_average": load, "warmup": args.warmup, "repeats": args.repeats,
            "plain_s": plain_s, "elastic_s": elastic_s, "ratio": elastic_s / plain_s,
            "notes": ["seconds per step, medians over repetitions, each step the slowest rank's; the sides "
                      "alternate step by step; ratio = elastic_s / plain_s; no rank fails during the timed steps",
                      "kill_to_next_step_s (with --kill): from the last rank's SIGKILL, as an elastic step starts, "
                      "to the end of that step redone by the survivors; recovery_s: the shrink and rebuild alone"]}


def table(r: dict) -> str:
    kill = ([f"kill -> next completed step {r['kill_to_next_step_s']:.3f} s (recovery {r['recovery_s']:.3f} s, "
             f"{r['workers_after_kill']} workers after)"] if "kill_to_next_step_s" in r else [])
    return "\n".join([
        f"elastic: {r['ranks']} ranks, {r['model']}, D-SGD on {r['topology']}, batch {r['batch_size']}, "
        f"{r['torch_threads']} torch threads, {r['date']}, load {r['load_average']:.1f}",
        f"plain    {r['plain_s'] * 1e3:8.3f} ms",
        f"elastic  {r['elastic_s'] * 1e3:8.3f} ms   (a state copy and one agreement per step)",
        f"ratio    {r['ratio']:.3f}",
        *kill,
    ])


def main(argv: list[str] | None = None) -> int:
    import json
    import sys
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = run(args)
    if args.rank == 0:
        print(json.dumps(report) if args.json else table(report), flush=True)
    if args.kill:
        from dsgd.elastic.join import leave
        leave(0)   # after a failure MPI_Finalize may wait forever (docs/elastic.md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

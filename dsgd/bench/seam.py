"""What the mixing machinery costs per step as n grows, beside the arithmetic of the same mixing.

    python -m dsgd.bench seam --json                                  # one process holds all n workers
    mpirun -np 4 --oversubscribe python -m dsgd.bench seam --json     # n / 4 workers per rank

Two measurements per (n, topology):

  planning   on one process, no communication, for rank 0 of --plan-ranks ranks: the seconds to build
             its plan cold, and the seconds a cached plan costs per step, from the dense matrix W(t)
             (the matrix is hashed to find its plan) and from the topology's step object (found by
             its key). Each side alternates with the other; medians over repetitions.
  mixing     the real Mixer.mix_ over the launched ranks, K = n / ranks workers per rank of
             --numel float32 each (serial workers, tiny model), against, in the same run, plain
             numpy on one process doing the same mixing for all n workers: the dense W @ X, and
             a sparse gather-and-sum (X[i] <- sum_j W[i, j] X[j] over the nonzeros). Reported per
             worker; the machinery's overhead per worker should not grow with n.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from mpi4py import MPI

import topologies
from dsgd.comm import Mixer, make_communicator
from dsgd.comm.base import CommStats
from dsgd.comm.plan import make_plan

from .common import load_average, median, now, positive
from .reports import seam_growth, seam_per_worker

DEFAULT_WORKERS = (64, 1024, 4096)
DEFAULT_TOPOLOGIES = ("ring", "one-peer-exponential")
NOTES = [
    "planning: rank 0 of plan_ranks ranks, n / plan_ranks workers each, no communication; "
    "cold_*_s builds a plan from nothing, cached_*_s is what finding the cached plan costs per step "
    "(dense: the matrix is hashed; step: its key is looked up); medians over repetitions",
    "mixing: Mixer.mix_ on (n / ranks, numel) float32 buffers per rank, max over ranks then median; "
    "numpy_dense_s is W @ X for all n workers on one process (float32), numpy_sparse_s the same "
    "sum over W's nonzeros only; *_per_worker_us divide by n (mixer: by n / ranks, the workers "
    "one rank serves)",
]


class _Planner:
    """A rank of `size` without communication: what Mixer.plan needs."""

    def __init__(self, rank: int, size: int):
        self.rank, self.size, self.stats = rank, size, CommStats()


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def planning(topo, n: int, ranks: int, repeats: int) -> dict:
    K = n // ranks
    period = topo.period
    dense = [topo.W(t) for t in range(period)]   # built outside the clock: what a run has cached
    steps = [topo.step(t) for t in range(period)]
    cold_dense = _best(lambda: make_plan(dense[0], 0, ranks, K), max(1, repeats // 4))
    cold_step = _best(lambda: make_plan(steps[0], 0, ranks, K), repeats)
    mixer = Mixer(_Planner(0, ranks), K)
    for t in range(period):
        mixer.plan(dense[t])
        mixer.plan(steps[t])
    cached_dense = _best(lambda: [mixer.plan(W) for W in dense], repeats) / period
    cached_step = _best(lambda: [mixer.plan(S) for S in steps], repeats) / period
    return {"plan_ranks": ranks, "workers_per_rank": K, "cold_dense_s": cold_dense, "cold_step_s": cold_step,
            "cached_dense_s": cached_dense, "cached_step_s": cached_step}


def numpy_mixing(topo, n: int, numel: int, repeats: int, dense_limit: int) -> dict:
    X = np.random.default_rng(0).standard_normal((n, numel)).astype(np.float32)
    step = topo.step(0)
    out = {}
    if step.kind == "sparse":
        w = step.data.astype(np.float32)[:, None]

        def sparse():  # CSR rows are contiguous: one gather, one segmented sum
            return np.add.reduceat(w * X[step.indices], step.indptr[:-1], axis=0)
        out["numpy_sparse_s"] = _best(sparse, repeats)
    if n <= dense_limit:
        W = np.asarray(topo.W(0), dtype=np.float32)
        out["numpy_dense_s"] = _best(lambda: W @ X, max(1, repeats // 4))
    return out


def mixing(world, comm, topo, n: int, numel: int, warmup: int, repeats: int) -> float:
    K = n // world.Get_size()
    mixer = Mixer(comm, K)
    x = torch.randn(K, numel, generator=torch.Generator().manual_seed(world.Get_rank()))
    times = np.zeros(repeats)
    for t in range(warmup + repeats):
        S = topo.step(t)
        world.Barrier()
        t0 = MPI.Wtime()
        mixer.mix_([x], S)
        if t >= warmup:
            times[t - warmup] = MPI.Wtime() - t0
    world.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
    return float(np.median(times))


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m dsgd.bench seam", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--workers", type=positive, nargs="+", default=list(DEFAULT_WORKERS), metavar="N",
                    help="worker counts n (each a multiple of the ranks and of --plan-ranks)")
    ap.add_argument("--topology", nargs="+", default=list(DEFAULT_TOPOLOGIES), metavar="T",
                    help="topology specs")
    ap.add_argument("--numel", type=positive, default=1000, help="float32 elements per worker (a tiny model)")
    ap.add_argument("--plan-ranks", type=positive, default=16, help="ranks the planning measurement assumes")
    ap.add_argument("--repeats", type=positive, default=20, help="timed repetitions")
    ap.add_argument("--warmup", type=int, default=3, help="untimed mixing steps first")
    ap.add_argument("--dense-limit", type=positive, default=1024,
                    help="largest n for which the dense numpy W @ X is timed (it is O(n^2) per step)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    size = MPI.COMM_WORLD.Get_size()
    for n in args.workers:
        if n % size or n % args.plan_ranks:
            ap.error(f"--workers {n} is not a multiple of the {size} ranks and of --plan-ranks {args.plan_ranks}")
    for spec in args.topology:
        if spec.split(":", 1)[0] not in topologies.FAMILIES:
            ap.error(f"unknown topology {spec!r} (known: {', '.join(topologies.FAMILIES)})")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    world = MPI.COMM_WORLD
    comm = make_communicator("mpi")
    rank0 = world.Get_rank() == 0
    report = {"benchmark": "seam", "world_size": world.Get_size(), "numel": args.numel, "date": now(),
              "load_average": load_average(), "torch_threads": torch.get_num_threads(),
              "results": [], "notes": NOTES}
    for spec in args.topology:
        for n in args.workers:
            topo = topologies.from_spec(spec, n)
            row = {"topology": spec, "n": n}
            if rank0:
                row.update(planning(topo, n, args.plan_ranks, args.repeats))
                row.update(numpy_mixing(topo, n, args.numel, args.repeats, args.dense_limit))
            row["mixer_s"] = mixing(world, comm, topo, n, args.numel, args.warmup, args.repeats)
            seam_per_worker(row, world.Get_size())
            report["results"].append(row)
    if rank0:
        report["growth"] = seam_growth(report["results"])
        print(json.dumps(report) if args.json else json.dumps(report, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

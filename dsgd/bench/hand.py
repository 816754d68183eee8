"""dsgd's mixing step against the same step written by hand with mpi4py and numpy.

    mpirun -np 4 --oversubscribe python -m dsgd.bench hand --json

Per (topology, numel), every rank holds one float32 row. Three things are timed, alternating in
every repetition (dsgd, hand, exchange, dsgd, ...), each after a barrier, as the slowest rank's
seconds; medians over repetitions:

  dsgd_s      Mixer.mix_ with the topology's step object, as the trainer runs it
  hand_s      what a careful user writes: preallocated receive buffers, Irecv from every in-neighbour
              and Isend to every out-neighbour, Waitall, then x *= W[i, i]; x += W[i, j] * r_j into a
              preallocated temporary (numpy); for the all-1/n matrix Allreduce(IN_PLACE) then x /= n
  exchange_s  the same messages (or Allreduce) without the arithmetic

hand_ratio = dsgd_s / hand_s is the target (<= 1.0); exchange_ratio = dsgd_s / exchange_s says how
much of a step is the arithmetic. After the timing, one step of each is run from the same input and
their results compared (max relative difference, reported).
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys

import numpy as np
import torch
from mpi4py import MPI

import topologies
from dsgd.comm import Mixer, classify, make_communicator

from .common import load_average, now, positive
from .reports import hand_row, profile_shares

DEFAULT_NUMEL = (270_000, 11_000_000)
DEFAULT_TOPOLOGIES = ("ring", "one-peer-exponential", "complete")
TAG = 4242


class HandStep:
    """The hand-written step for one rank and the topology's matrices."""

    def __init__(self, comm, numel: int, topo):
        self.comm, self.rank, self.n = comm, comm.Get_rank(), comm.Get_size()
        matrices = [topo.W(t) for t in range(topo.period)]
        peers = sorted({int(j) for W in matrices for j in np.flatnonzero(W[self.rank]) if j != self.rank})
        self.recv = {j: torch.zeros(numel).numpy() for j in peers}
        self.tmp = torch.zeros(numel).numpy()

    def exchange(self, W, x) -> list:
        r = self.rank
        ins = [int(j) for j in np.flatnonzero(W[r]) if j != r]
        outs = [int(j) for j in np.flatnonzero(W[:, r]) if j != r]
        reqs = [self.comm.Irecv(self.recv[j], source=j, tag=TAG) for j in ins]
        reqs += [self.comm.Isend(x, dest=j, tag=TAG) for j in outs]
        MPI.Request.Waitall(reqs)
        return ins

    def __call__(self, W, x, arithmetic: bool = True) -> None:
        if classify(W) == "average":
            self.comm.Allreduce(MPI.IN_PLACE, x, op=MPI.SUM)
            if arithmetic:
                x /= self.n
            return
        ins = self.exchange(W, x)
        if arithmetic:
            x *= W[self.rank, self.rank]
            for j in ins:
                np.multiply(self.recv[j], W[self.rank, j], out=self.tmp)
                x += self.tmp


def timed(world, fn) -> float:
    world.Barrier()
    t0 = MPI.Wtime()
    fn()
    return MPI.Wtime() - t0


def measure(world, comm, raw_comm, spec: str, numel: int, warmup: int, repeats: int) -> dict:
    topo = topologies.from_spec(spec, world.Get_size())
    rank = world.Get_rank()
    mixer = Mixer(comm, workers_per_rank=1)
    hand = HandStep(raw_comm, numel, topo)
    start = torch.empty(1, numel).normal_(generator=torch.Generator().manual_seed(rank))
    x = start.clone()
    y = start[0].clone().numpy()
    times = np.zeros((repeats, 3))
    for t in range(warmup + repeats):
        S, W = topo.step(t), topo.W(t)
        row = (timed(world, lambda: mixer.mix_([x], S)), timed(world, lambda: hand(W, y)),
               timed(world, lambda: hand(W, y, arithmetic=False)))
        if t >= warmup:
            times[t - warmup] = row
        x.copy_(start)  # keep values bounded, outside the clock
        y[:] = start[0].numpy()
    world.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
    S, W = topo.step(0), topo.W(0)
    mixer.mix_([x], S)
    hand(W, y)
    diff = np.array([float(np.max(np.abs(x[0].numpy() - y)) / max(float(np.max(np.abs(y))), 1e-30))])
    world.Allreduce(MPI.IN_PLACE, diff, op=MPI.MAX)
    return hand_row(spec, classify(W), numel, times, float(diff[0]), repeats)


def profile(world, comm, spec: str, numel: int, steps: int, top: int = 8) -> list:
    """Where dsgd's step spends its time on this rank: (function, share of the total) for the `top`
    functions by own time, over `steps` steps under cProfile."""
    topo = topologies.from_spec(spec, world.Get_size())
    mixer = Mixer(comm, workers_per_rank=1)
    x = torch.zeros(1, numel)
    mixer.mix_([x], topo.step(0))
    prof = cProfile.Profile()
    prof.enable()
    for t in range(steps):
        mixer.mix_([x], topo.step(t))
    prof.disable()
    return profile_shares(pstats.Stats(prof).stats, top)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dsgd.bench hand", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--numel", type=positive, nargs="+", default=list(DEFAULT_NUMEL), help="float32 per rank")
    ap.add_argument("--topology", nargs="+", default=list(DEFAULT_TOPOLOGIES), help="topology specs")
    ap.add_argument("--repeats", type=positive, default=15, help="timed repetitions")
    ap.add_argument("--warmup", type=int, default=3, help="untimed repetitions first")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="also profile STEPS of dsgd's step per configuration on rank 0 (cProfile): the functions "
                         "with the largest own time and their share")
    ap.add_argument("--json", action="store_true", help="print one JSON object (default: indented)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    world = MPI.COMM_WORLD
    for spec in args.topology:
        try:
            topologies.from_spec(spec, world.Get_size())
        except topologies.TopologyError as e:
            ap.error(f"--topology {spec}: {e}")
    comm, raw_comm = make_communicator("mpi"), world.Dup()
    report = {"benchmark": "hand", "world_size": world.Get_size(), "date": now(), "load_average": load_average(),
              "torch_threads": torch.get_num_threads(), "results": [
                  measure(world, comm, raw_comm, spec, numel, args.warmup, args.repeats)
                  for spec in args.topology for numel in args.numel]}
    if args.profile:
        for r in report["results"]:
            r["profile"] = profile(world, comm, r["topology"], r["numel"], args.profile)
    raw_comm.Free()
    if world.Get_rank() == 0:
        print(json.dumps(report) if args.json else json.dumps(report, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""dsgd's mixing step against the same step written by hand with mpi4py and numpy.

    mpirun -np 4 --oversubscribe python -m dsgd.bench hand --json

Per (topology, numel), every rank holds one float32 row. Seven things are timed, in an order that
rotates every repetition, each after a barrier, as the slowest rank's seconds; medians over
repetitions:

  dsgd_s        Mixer.mix_ with the topology's step object, as the trainer runs it, on a buffer
                allocated as the trainer allocates its flat buffers (BucketLayout.allocate: on huge
                pages when large, dsgd.comm.memory)
  hand_s        the fastest (by median) of three hand-written steps, receive buffers preallocated,
                Irecv from every in-neighbour and Isend to every out-neighbour, Waitall, then:
                  in_place    float32 on numpy arrays (numpy puts arrays of 4 MiB and more on huge
                              pages): x += r_j for each neighbour, then x /= (degree + 1) when the
                              row's weights are equal (ring, exponential, one-peer), else x *= w_ii
                              and x += w_ij * r_j through a preallocated temporary
                  expression  the same arrays, x = (x + r_1 + r_2 + ...) / (degree + 1), or
                              x = w_ii * x + sum_j w_ij * r_j: a new array each step
                  float64_weights   this benchmark's reference until 2026-12-03: x *= W[i, i] and
                              x += W[i, j] * r_j through a temporary with W's float64 entries (numpy
                              then computes in float64 and casts back), on arrays from torch's
                              allocator (4 KiB pages)
                for the all-1/n matrix Allreduce(IN_PLACE) then x /= n (in place, x = x / n, or
                x /= n on the 4 KiB-page array)
  exchange_s    the same messages (or Allreduce) without the arithmetic, on the numpy arrays
  exchange_small_pages_s   the same on the arrays from torch's allocator: what moving the same bytes
                costs when the buffers are not on huge pages
  dsgd_small_pages_s   dsgd's step on buffers from torch's allocator, its own receive buffers
                included: the step as it ran before its buffers were put on huge pages

hand_ratio = dsgd_s / hand_s is the target (<= 1.0), hand_ratio_paired the median over repetitions
of the two sides' times in the same repetition (with its quartiles); exchange_ratio = dsgd_s / exchange_s says how
much of a step is the arithmetic; previous_ratio = dsgd_small_pages_s / float64_weights is what this
benchmark reported before. After the timing, one step of each is run from the same input and
the results compared (max relative difference to the in-place step, reported; dsgd sums its own
term first, then the neighbours in ascending order, each with its weight, so the last bits may
differ).
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
from dsgd.comm.memory import host_zeros, huge_pages

from .common import load_average, now, positive
from .reports import HAND_COLUMNS, hand_row, profile_shares

DEFAULT_NUMEL = (270_000, 11_000_000)
DEFAULT_TOPOLOGIES = ("ring", "one-peer-exponential", "complete")
TAG = 4242


class HandStep:
    """The hand-written steps for one rank and the topology's matrices."""

    def __init__(self, comm, numel: int, topo):
        self.comm, self.rank, self.n = comm, comm.Get_rank(), comm.Get_size()
        matrices = [topo.W(t) for t in range(topo.period)]
        peers = sorted({int(j) for W in matrices for j in np.flatnonzero(W[self.rank]) if j != self.rank})
        self.recv = {j: np.zeros(numel, dtype=np.float32) for j in peers}
        self.tmp = np.zeros(numel, dtype=np.float32)
        self.small_pages = {j: torch.zeros(numel).numpy() for j in peers}   # torch's allocator: 4 KiB pages
        self.small_x = torch.zeros(numel).numpy()
        self.small_tmp = torch.zeros(numel).numpy()

    def exchange(self, W, x, recv=None) -> list:
        r, recv = self.rank, self.recv if recv is None else recv
        ins = [int(j) for j in np.flatnonzero(W[r]) if j != r]
        outs = [int(j) for j in np.flatnonzero(W[:, r]) if j != r]
        reqs = [self.comm.Irecv(recv[j], source=j, tag=TAG) for j in ins]
        reqs += [self.comm.Isend(x, dest=j, tag=TAG) for j in outs]
        MPI.Request.Waitall(reqs)
        return ins

    def exchange_small_pages(self, W) -> None:
        if classify(W) == "average":
            self.comm.Allreduce(MPI.IN_PLACE, self.small_x, op=MPI.SUM)
        else:
            self.exchange(W, self.small_x, self.small_pages)

    def in_place(self, W, x, arithmetic: bool = True) -> np.ndarray:
        if classify(W) == "average":
            self.comm.Allreduce(MPI.IN_PLACE, x, op=MPI.SUM)
            if arithmetic:
                np.divide(x, np.float32(self.n), out=x)
            return x
        ins = self.exchange(W, x)
        if not arithmetic:
            return x
        row = W[self.rank]
        if np.all(row[ins] == row[self.rank]):
            for j in ins:
                np.add(x, self.recv[j], out=x)
            np.divide(x, np.float32(len(ins) + 1), out=x)
        else:
            np.multiply(x, np.float32(row[self.rank]), out=x)
            for j in ins:
                np.multiply(self.recv[j], np.float32(row[j]), out=self.tmp)
                np.add(x, self.tmp, out=x)
        return x

    def float64_weights(self, W, x) -> None:
        """The former reference, on 4 KiB-page arrays: W's float64 weights, through a temporary."""
        if classify(W) == "average":
            self.comm.Allreduce(MPI.IN_PLACE, x, op=MPI.SUM)
            x /= self.n
            return
        ins = self.exchange(W, x, self.small_pages)
        x *= W[self.rank, self.rank]
        for j in ins:
            np.multiply(self.small_pages[j], W[self.rank, j], out=self.small_tmp)
            x += self.small_tmp

    def expression(self, W, x) -> np.ndarray:
        """The step as one numpy expression: a new array (the caller keeps it for the next step)."""
        if classify(W) == "average":
            self.comm.Allreduce(MPI.IN_PLACE, x, op=MPI.SUM)
            return x / np.float32(self.n)
        ins = self.exchange(W, x)
        row = W[self.rank]
        if np.all(row[ins] == row[self.rank]):
            total = x
            for j in ins:
                total = total + self.recv[j]
            return total / np.float32(len(ins) + 1)
        total = np.float32(row[self.rank]) * x
        for j in ins:
            total = total + np.float32(row[j]) * self.recv[j]
        return total


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
    x = host_zeros(1, numel)   # as BucketLayout.allocate gives the trainer its flat buffers
    y = np.empty(numel, dtype=np.float32)
    held = {"z": np.empty(numel, dtype=np.float32)}   # the expression's x: a new array every step
    small = Mixer(comm, workers_per_rank=1)           # dsgd's step as before: every buffer from torch's allocator
    x_small = torch.zeros(1, numel)
    with huge_pages(False):
        small.mix_([x_small], topo.step(0))           # allocates its receive buffers
        if topo.period > 1:
            small.mix_([x_small], topo.step(1))

    def reset() -> None:  # keep values bounded, outside the clock
        x.copy_(start)
        x_small.copy_(start)
        y[:] = start[0].numpy()
        held["z"][:] = start[0].numpy()
        hand.small_x[:] = start[0].numpy()

    def expression(W) -> None:
        held["z"] = hand.expression(W, held["z"])

    times = np.zeros((repeats, len(HAND_COLUMNS)))
    reset()
    for t in range(warmup + repeats):
        S, W = topo.step(t), topo.W(t)
        sides = [lambda: mixer.mix_([x], S), lambda: hand.in_place(W, y), lambda: expression(W),
                 lambda: hand.float64_weights(W, hand.small_x), lambda: hand.in_place(W, y, arithmetic=False),
                 lambda: hand.exchange_small_pages(W), lambda: small.mix_([x_small], S)]
        row = [0.0] * len(sides)
        for k in range(len(sides)):   # who goes first rotates: no side always runs on a cache the last one left
            i = (t + k) % len(sides)
            row[i] = timed(world, sides[i])
            reset()
        if t >= warmup:
            times[t - warmup] = row
    world.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
    S, W = topo.step(0), topo.W(0)
    mixer.mix_([x], S)
    small.mix_([x_small], S)
    hand.in_place(W, y)
    z = hand.expression(W, held["z"])
    hand.float64_weights(W, hand.small_x)
    scale = max(float(np.max(np.abs(y))), 1e-30)
    diff = np.array([float(np.max(np.abs(other - y))) / scale
                     for other in (x[0].numpy(), x_small[0].numpy(), z, hand.small_x)])
    world.Allreduce(MPI.IN_PLACE, diff, op=MPI.MAX)
    return hand_row(spec, classify(W), numel, times, float(diff.max()), repeats)


def profile(world, comm, spec: str, numel: int, steps: int, top: int = 8) -> list:
    """Where dsgd's step spends its time on this rank: (function, share of the total) for the `top`
    functions by own time, over `steps` steps under cProfile."""
    topo = topologies.from_spec(spec, world.Get_size())
    mixer = Mixer(comm, workers_per_rank=1)
    x = host_zeros(1, numel)
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

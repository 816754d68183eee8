"""Time one mixing step, Mixer.mix_, against raw mpi4py moving the same bytes.

    mpirun -np 4 --oversubscribe python -m dsgd.bench mix --json
    mpirun -np 8 python -m dsgd.bench mix --numel 270000 --topology ring torus --backend torch

For each (topology, numel) every rank holds one flat fp32 buffer of shape (1, numel). A
repetition is: barrier, then each rank times the step alone; the step's time is the max over
ranks (it is done when the slowest rank is). dsgd and raw repetitions alternate, A B A B, so
drifting noise hits both alike; reported times are medians over repetitions. Time-varying
topologies use W(t) with t = repetition index (warmup included), for both sides. The Mixer is
given the topology's step object (`Topology.step(t)`), as the trainer's schedules give it.

The raw baseline depends on the shape of W, read off W itself as the Mixer does:
  identity  nothing: an empty operation costs 0 s, so raw_s = 0 and ratio = null
  all-1/n   comm.Allreduce(IN_PLACE, buf, op=SUM)
  sparse    Irecv from every in-neighbour j (W[rank, j] != 0) into preallocated buffers and
            Isend of the whole buffer to every out-neighbour j (W[j, rank] != 0), then Waitall
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import numpy as np
import torch
from mpi4py import MPI

import topologies
from dsgd.bench.common import non_negative, positive
from dsgd.bench.reports import IDENTITY, bytes_sent, in_peers, mix_row, mix_topologies, out_peers
from dsgd.comm import Mixer, classify, make_communicator
from dsgd.schedules.base import mixing_step

DEFAULT_NUMEL = (270_000, 11_000_000)  # parameters of ResNet-20 and ResNet-18
DEFAULT_TOPOLOGIES = ("complete", "ring", "torus", "exponential", "one-peer-exponential", "identity")
RAW_TAG = 7331         # on a duplicate of COMM_WORLD, so it can never match the Mixer's messages
NOTES = [
    "times are seconds per step: max over ranks per repetition, then the median over repetitions",
    "bytes_sent_per_rank: bytes one rank hands to the network per step, the max over ranks, "
    "averaged over the timed steps: out-degree x buffer bytes for sparse W, the buffer bytes given "
    "to Allreduce for the all-1/n matrix (the library moves about 2(n-1)/n of that), 0 for identity",
    "gbps = bytes_sent_per_rank / dsgd_s / 1e9 (decimal gigabytes per second, not gigabits)",
    "raw_s: plain mpi4py moving the same bytes to the same peers, without the weighted sum; "
    "ratio = dsgd_s / raw_s, null when raw_s is 0 (identity: the baseline is an empty operation)",
    "kind: how the Mixer runs the step, read off W: identity, average (one allreduce) or sparse",
    "all buffers, dsgd's and the baseline's numpy arrays, come from torch's allocator",
]


class RawStep:
    """The bytes of one mixing step moved with plain mpi4py on numpy buffers, no arithmetic."""

    def __init__(self, comm, numel: int, matrices: list[np.ndarray]):
        self.comm, self.rank = comm, comm.Get_rank()
        # Memory from torch's allocator, like the Mixer's: where pages come from changes copy speed
        # by tens of percent here, and the ratio should show dsgd's cost, not the allocator's.
        # Zeros are written (not np.zeros' untouched pages, which all map the kernel's one zero
        # page and read from cache) and keep repeated Allreduce sums finite.
        self.buf = torch.zeros(numel).numpy()
        peers = sorted({j for W in matrices for j in in_peers(W, self.rank)})
        self.recv = {j: torch.zeros(numel).numpy() for j in peers}

    def __call__(self, W: np.ndarray) -> None:
        kind = classify(W)
        if kind == "average":
            self.comm.Allreduce(MPI.IN_PLACE, self.buf, op=MPI.SUM)
        elif kind == "sparse":
            reqs = [self.comm.Irecv(self.recv[j], source=j, tag=RAW_TAG) for j in in_peers(W, self.rank)]
            reqs += [self.comm.Isend(self.buf, dest=j, tag=RAW_TAG) for j in out_peers(W, self.rank)]
            MPI.Request.Waitall(reqs)


def timed(world, step) -> float:
    """Seconds this rank spends in step(), starting together after a barrier."""
    world.Barrier()
    t0 = MPI.Wtime()
    step()
    return MPI.Wtime() - t0


def measure(world, raw_comm, comm, topo, numel: int, warmup: int, repeats: int) -> dict:
    """Median max-over-ranks seconds of the dsgd step and the raw step, and bytes sent per step."""
    rank = world.Get_rank()
    mixer = Mixer(comm, workers_per_rank=1)  # fresh caches: warmup pays for plans and receive buffers
    x = torch.empty(1, numel).normal_(generator=torch.Generator().manual_seed(rank))  # as buckets are
    raw = RawStep(raw_comm, numel, [topo.W(t) for t in range(topo.period)])
    times = np.zeros((repeats, 2))
    sent = np.zeros(1)
    for t in range(warmup + repeats):
        W, S = topo.W(t), mixing_step(topo, t)   # the Mixer gets what the trainer gives it
        dsgd_s = timed(world, lambda: mixer.mix_([x], S))
        raw_s = 0.0 if classify(W) == "identity" else timed(world, lambda: raw(W))
        if t >= warmup:
            times[t - warmup] = dsgd_s, raw_s
            sent += bytes_sent(W, rank, x.numel() * x.element_size())
    world.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
    world.Allreduce(MPI.IN_PLACE, sent, op=MPI.MAX)
    return mix_row(classify(topo.W(warmup)), numel, times, float(sent[0]), repeats)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dsgd.bench mix", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--numel", type=positive, nargs="+", action="extend", metavar="M",
                    help=f"float32 elements per rank (default {' '.join(map(str, DEFAULT_NUMEL))})")
    ap.add_argument("--topology", nargs="+", action="extend", metavar="T",
                    help="topology specs as topologies.from_spec takes them, or 'identity' "
                         f"(default {' '.join(DEFAULT_TOPOLOGIES)})")
    ap.add_argument("--backend", choices=("mpi", "torch"), default="mpi",
                    help="communicator under the Mixer; the raw baseline is always mpi4py")
    ap.add_argument("--repeats", type=positive, default=20, help="timed repetitions of each side")
    ap.add_argument("--warmup", type=non_negative, default=3, help="untimed repetitions first")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    args.numel = args.numel or list(DEFAULT_NUMEL)
    args.topology = args.topology or list(DEFAULT_TOPOLOGIES)
    for spec in args.topology:
        name = spec.split(":", 1)[0]
        if spec != IDENTITY and name not in topologies.FAMILIES:
            ap.error(f"unknown topology {name!r} (known: identity, {', '.join(topologies.FAMILIES)})")
    return args


def run(args: argparse.Namespace) -> dict:
    """Measure every (topology, numel); the report rank 0 prints."""
    world = MPI.COMM_WORLD
    raw_comm = world.Dup()  # the baseline's own message space
    comm = make_communicator(args.backend)
    report = {"benchmark": "mix", "backend": args.backend, "world_size": world.Get_size(),
              "device": "cpu", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "torch_threads": torch.get_num_threads(), "warmup": args.warmup,
              "load_average": os.getloadavg()[0],  # > cores: others share the machine, times inflate
              "results": [], "skipped": [], "notes": list(NOTES)}
    measured, report["skipped"], skip_notes = mix_topologies(args.topology, world.Get_size())
    report["notes"] += skip_notes
    for spec, topo in measured:
        for numel in args.numel:
            result = measure(world, raw_comm, comm, topo, numel, args.warmup, args.repeats)
            report["results"].append({"topology": spec, **result})
    raw_comm.Free()
    return report


def table(report: dict) -> str:
    lines = [f"mix: backend {report['backend']}, {report['world_size']} ranks, {report['device']}, "
             f"{report['date']}",
             f"{'topology':<22}{'numel':>10}  {'kind':<9}{'dsgd ms':>10}{'raw ms':>10}{'ratio':>8}{'GB/s':>8}"]
    for r in report["results"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        gbps = "-" if not r["bytes_sent_per_rank"] else f"{r['gbps']:.2f}"
        lines.append(f"{r['topology']:<22}{r['numel']:>10}  {r['kind']:<9}{r['dsgd_s'] * 1e3:>10.3f}"
                     f"{r['raw_s'] * 1e3:>10.3f}{ratio:>8}{gbps:>8}")
    lines += [f"skipped {s['topology']}: {s['reason']}" for s in report["skipped"]]
    lines.append("ms per step: max over ranks, median over repetitions; GB/s = bytes sent per rank / dsgd "
                 "time; --json gives the exact definitions")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = run(args)
    if MPI.COMM_WORLD.Get_rank() == 0:
        print(json.dumps(report) if args.json else table(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What really crosses the wire: loopback TCP bytes of ring steps, dense against sign-compressed.

    mpirun -np 4 --mca pml ob1 --mca btl self,tcp python -m mpi4py wire_bytes.py

With MPI forced onto TCP over loopback, /proc/net/dev counts every byte the ranks exchange.
Prints one JSON line (rank 0): bytes on the wire and the payload bytes dsgd counted, per phase.
"""
import json

import torch
from mpi4py import MPI

import topologies
from dsgd.comm import Mixer, make_communicator
from dsgd.compress import parse_codec

M, STEPS = 1 << 20, 5


def loopback_tx() -> int:
    for line in open("/proc/net/dev"):
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[8])
    raise RuntimeError("no loopback interface in /proc/net/dev")


world = MPI.COMM_WORLD
mixer = Mixer(make_communicator("mpi"), 1)
W = topologies.from_spec("ring", world.size).W(0)
x = torch.randn(1, M)
report = {}
for name in ("dense", "sign"):
    codec = None if name == "dense" else parse_codec("sign")
    world.Barrier()
    tx0, counted0 = loopback_tx(), world.allreduce(mixer.stats.bytes_sent)
    for step in range(STEPS):
        if codec is None:
            mixer.mix_([x.clone()], W)
        else:
            mixer.compressed([x], W, codec, 0, step)
    world.Barrier()
    report[name] = {"wire_bytes": loopback_tx() - tx0, "counted_bytes": world.allreduce(mixer.stats.bytes_sent) - counted0}
if world.rank == 0:
    report["ratio"] = report["sign"]["wire_bytes"] / report["dense"]["wire_bytes"]
    print(json.dumps(report))

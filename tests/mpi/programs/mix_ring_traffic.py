"""Per gossip step on a ring with one worker per rank, each rank sends and receives 2 x model bytes.

    mpirun -np 5 python -m mpi4py mix_ring_traffic.py --backend mpi
"""
import argparse

import torch
from mpi4py import MPI

import topologies
from dsgd.comm import Mixer, make_communicator

ap = argparse.ArgumentParser()
ap.add_argument("--backend", default="mpi")
args = ap.parse_args()
world = MPI.COMM_WORLD
mixer = Mixer(make_communicator(args.backend), 1)
x = torch.full((1, 1000), float(world.rank))
model_bytes = x.numel() * x.element_size()
W = topologies.build("ring", world.size).W(0)
for _ in range(3):
    mixer.mix_([x], W)
mixer.mix_([x], topologies.build("complete", world.size).W(0) * 0 + __import__("numpy").eye(world.size))
s = mixer.stats
assert s.bytes_sent == 3 * 2 * model_bytes, s
assert s.bytes_recv == 3 * 2 * model_bytes, s
assert s.steps == {"identity": 1, "average": 0, "sparse": 3}, s.steps
if world.rank == 0:
    print("ring traffic ok", s.bytes_sent)

# Two buffers mixed with the same W (a rule's parameters and tracker) travel as one message per neighbour.
y = torch.full((1, 1000), 2.0 * world.rank)
before_messages, before_bytes = s.messages, s.bytes_sent
mixer.mix_([x, y], W)
assert s.messages - before_messages == 2, s.messages - before_messages  # one to each ring neighbour
assert s.bytes_sent - before_bytes == 2 * 2 * model_bytes
expected = sum(2.0 * r for r in ((world.rank - 1) % world.size, world.rank, (world.rank + 1) % world.size)) / 3
assert torch.allclose(y, torch.full_like(y, expected)), (y[0, 0], expected)
if world.rank == 0:
    print("coalesced ok")

"""Hierarchical mixing across namespace "hosts" (2 ranks each): what crosses hosts, counted by the kernel.

    launch/dsgd-mpirun -np 6 --hostfile HOSTFILE(slots=2) ... -- python tests/launch/netns_hierarchical.py

Three phases of STEPS mixing steps of one ROW-float row per rank, each checked against numpy W @ X:
  inside     hierarchical with the identity between groups: the per-host allreduce only
  hier       hierarchical, one-peer exponential between the 3 groups: allreduce + one row to one other host
  flat       the same W as a plain neighbour exchange (its dense matrix): each row to both workers of
             the neighbouring group
The first rank on each host prints the bytes its namespace sent out of its network interface
(loopback and bridge ports excluded) in each phase.
"""
import json
import socket

import numpy as np
import torch
from mpi4py import MPI

import topologies
from dsgd.comm import Mixer, make_communicator

ROW = 1 << 20     # 4 MiB of float32 per row
STEPS = 4


def sent_bytes() -> int:
    """Bytes this namespace sent out of its own interfaces (eth0 on a host, br0 on the hub)."""
    total = 0
    with open("/proc/net/dev") as f:
        for line in f.readlines()[2:]:
            name, data = line.split(":", 1)
            name = name.strip()
            if name == "lo" or name.startswith("port"):
                continue
            total += int(data.split()[8])
    return total


def main():
    world = MPI.COMM_WORLD
    rank, size = world.rank, world.size
    mixer = Mixer(make_communicator("mpi"), 1)
    hosts = world.allgather(socket.gethostname())
    first_on_host = hosts.index(hosts[rank]) == rank
    inside = topologies.from_spec("hierarchical:group=2,outer=ring,inner_every=1,outer_every=1000", size)
    hier = topologies.from_spec("hierarchical:group=2,outer=one-peer-exponential", size)
    phases = {"inside": [(inside.step(t), inside.W(t)) for t in range(STEPS)],
              "hier": [(hier.step(t), hier.W(t)) for t in range(STEPS)],
              "flat": [(np.asarray(hier.W(t)), hier.W(t)) for t in range(STEPS)]}
    report = {"rank": rank, "host": hosts[rank], "row_bytes": ROW * 4, "steps": STEPS}
    for name, steps in phases.items():
        plan_kinds = sorted({mixer.plan(W).kind for W, _ in steps})
        world.Barrier()
        before = sent_bytes()
        for t, (W, dense) in enumerate(steps):
            X = np.random.default_rng(t).standard_normal((size, ROW)).astype(np.float32)
            x = torch.from_numpy(X[rank:rank + 1].copy())
            mixer.mix_([x], W)
            np.testing.assert_allclose(x.numpy()[0], (dense @ X.astype(np.float64))[rank], rtol=1e-4, atol=1e-4)
        world.Barrier()
        report[name] = {"sent": sent_bytes() - before, "plans": plan_kinds}
    if first_on_host:
        print("netns-hier " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()

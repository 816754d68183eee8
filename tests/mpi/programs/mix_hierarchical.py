"""Hierarchical mixing (exact average inside groups, a topology between them) equals the dense
numpy W @ X under every layout, runs as an allreduce inside groups plus an exchange between
them when groups are whole ranks, and moves no byte between groups inside a group's average.

    mpirun -np 6 python -m mpi4py mix_hierarchical.py --workers-per-rank 2 --backend mpi
"""
import argparse

import numpy as np
import torch
from mpi4py import MPI

import topologies
from dsgd.comm import Mixer, make_communicator

M = (333, 40)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers-per-rank", type=int, default=1)
    ap.add_argument("--backend", default="mpi")
    args = ap.parse_args()
    world = MPI.COMM_WORLD
    K, size = args.workers_per_rank, world.size
    n = size * K
    mine = list(range(world.rank * K, world.rank * K + K))
    mixer = Mixer(make_communicator(args.backend), K)
    checked = {"hierarchical": 0, "sparse": 0}
    groups = [g for g in range(1, n + 1) if n % g == 0 and n // g >= 1]
    for group in groups:
        for outer in ("ring", "complete", "one-peer-exponential", "exponential"):
            spec = f"hierarchical:group={group},outer={outer},inner_every=1,outer_every=2"
            try:
                topo = topologies.from_spec(spec, n)
            except topologies.TopologyError:
                continue
            for t in range(4):
                step, W = topo.step(t), topo.W(t)
                rng = np.random.default_rng(100 * group + t)
                X = [rng.standard_normal((n, m)).astype(np.float32) for m in M]
                bufs = [torch.from_numpy(x[mine].copy()) for x in X]
                plan = mixer.plan(step)
                before = mixer.stats.bytes_sent
                mixer.mix_(bufs, step)
                for x, got in zip(X, bufs):
                    np.testing.assert_allclose(got.numpy(), (W @ x.astype(np.float64))[mine], rtol=1e-5, atol=1e-5,
                                               err_msg=f"{spec}@{t}")
                if plan.kind == "hierarchical":
                    sent = mixer.stats.bytes_sent - before   # point-to-point bytes (the allreduce is counted apart)
                    outer_kind = step.outer.kind if step.kind == "hierarchical" else "identity"
                    if outer_kind == "identity":
                        assert sent == 0, (spec, t, sent)
                    checked["hierarchical"] += 1
                elif step.kind != "identity":
                    checked["sparse"] += 1
    counts = world.allgather(checked)
    assert all(c == counts[0] for c in counts)
    world.Barrier()
    if world.rank == 0:
        print(f"hierarchical ok: {checked['hierarchical']} steps as allreduce + exchange, "
              f"{checked['sparse']} as neighbour exchange, {n} workers")


if __name__ == "__main__":
    main()

"""The Mixer given a topology's step objects does bit for bit what it does given the dense W(t),
counts the same bytes, and equals the numpy W @ X.

    mpirun -np 4 python -m mpi4py mix_steps.py --workers-per-rank 2
"""
import argparse

import numpy as np
import torch
from mpi4py import MPI

import topologies
from dsgd.comm import Mixer, make_communicator
from topologies import steps

SPECS = ["complete", "ring", "torus", "exponential", "one-peer-exponential", "random-one-peer:seed=3",
         "directed-exponential", "random-out:s=2,seed=1"]
M = (501, 64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers-per-rank", type=int, default=1)
    ap.add_argument("--backend", default="mpi")
    args = ap.parse_args()
    world = MPI.COMM_WORLD
    K = args.workers_per_rank
    n = world.size * K
    mine = list(range(world.rank * K, world.rank * K + K))
    by_step, by_matrix = Mixer(make_communicator(args.backend), K), Mixer(make_communicator(args.backend), K)
    checked = 0
    cases = [("average", steps.average(n), np.full((n, n), 1 / n)), ("identity", steps.identity(n), np.eye(n))]
    for spec in SPECS:
        try:
            topo = topologies.from_spec(spec, n)
        except topologies.TopologyError:
            continue
        for t in range(6):
            cases.append((f"{spec}@{t}", topo.step(t), topo.W(t)))
            cases.append((f"{spec}@{t} halfway", topo.step(t).halfway(), 0.5 * (np.eye(n) + topo.W(t))))
    for seed, (label, step, W) in enumerate(cases):
        rng = np.random.default_rng(seed)
        X = [rng.standard_normal((n, m)).astype(np.float32) for m in M]
        a = [torch.from_numpy(x[mine].copy()) for x in X]
        b = [torch.from_numpy(x[mine].copy()) for x in X]
        before = (by_step.worker_bytes_sent.copy(), by_matrix.worker_bytes_sent.copy())
        by_step.mix_(a, step)
        by_matrix.mix_(b, W)
        for x, got, ref in zip(X, a, b):
            assert torch.equal(got, ref), f"{label}: step and dense matrix mix differently"
            np.testing.assert_allclose(got.numpy(), (W @ x.astype(np.float64))[mine], rtol=1e-5, atol=1e-5,
                                       err_msg=label)
        np.testing.assert_array_equal(by_step.worker_bytes_sent - before[0],
                                      by_matrix.worker_bytes_sent - before[1], err_msg=label)
        checked += 1
    assert by_step.stats.steps == by_matrix.stats.steps
    world.Barrier()
    if world.rank == 0:
        print(f"steps ok: {checked} steps, {n} workers")


if __name__ == "__main__":
    main()

"""Every backend's mixing step equals the dense numpy W @ X on every rank, and counts bytes as theory says.

    mpirun -np 4 python -m mpi4py mix_contract.py --backends mpi,torch,simulated --workers-per-rank 1
"""
import argparse

import numpy as np
import torch
from mpi4py import MPI

import topologies
from dsgd.comm import Mixer, SimulatedMixer, make_communicator

SPECS = ["complete", "ring", "torus", "grid", "star", "hypercube", "exponential", "one-peer-exponential",
         "random-regular:degree=3,seed=1", "erdos-renyi:p=0.5,seed=2", "random-one-peer:seed=3"]
STEPS = 4          # time-varying families change W every step
M = (777, 300)     # two float32 buckets of different lengths, plus one float64 bucket of M[1]


def random_user_matrix(n, seed):
    rng = np.random.default_rng(seed)
    A = rng.random((n, n)) * (rng.random((n, n)) < 0.4) + np.eye(n)
    for _ in range(1000):
        A /= A.sum(1, keepdims=True)
        A /= A.sum(0, keepdims=True)
    return A


def cases(n):
    for spec in SPECS:
        try:
            topo = topologies.from_spec(spec, n)
        except topologies.TopologyError:
            continue
        for t in range(STEPS if topo.time_varying else 1):
            yield f"{spec}@{t}", topo.W(t)
    yield "user-matrix", random_user_matrix(n, seed=n)
    yield "identity", np.eye(n)


def global_inputs(n, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, M[0])).astype(np.float32), rng.standard_normal((n, M[1])).astype(np.float32),
            rng.standard_normal((n, M[1]))]


def expected_bytes(W, workers, row_bytes):
    out_degree = ((W[:, workers] != 0).sum(0) - (np.diag(W)[workers] != 0))
    return out_degree * row_bytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="mpi")
    ap.add_argument("--workers-per-rank", type=int, default=1)
    args = ap.parse_args()
    world = MPI.COMM_WORLD
    K = args.workers_per_rank
    n = world.size * K
    mine = list(range(world.rank * K, world.rank * K + K))
    mixers = {b: Mixer(make_communicator(b), K) for b in args.backends.split(",")
              if b not in ("simulated", "mpi-staged")}
    if "mpi-staged" in args.backends:  # the host-staging path a GPU without CUDA-aware MPI takes
        from dsgd.comm.mpi import MPICommunicator
        mixers["mpi-staged"] = Mixer(MPICommunicator(stage=True), K)
    results = {}
    for seed, (label, W) in enumerate(cases(n)):
        X = global_inputs(n, seed)
        expected = [W @ x.astype(np.float64) for x in X]
        row_bytes = sum(x[0].nbytes for x in X)
        for backend, mixer in mixers.items():
            bufs = [torch.from_numpy(x[mine].copy()) for x in X]
            before = mixer.worker_bytes_sent.copy()
            pending = mixer.start(bufs, W)
            torch.randn(256, 256) @ torch.randn(256, 256)  # compute while the step is in flight
            pending.wait()
            for got, exp in zip(bufs, expected):
                tol = 1e-12 if got.dtype == torch.float64 else 1e-5
                np.testing.assert_allclose(got.numpy(), exp[mine], rtol=tol, atol=tol, err_msg=f"{backend} {label}")
            sent = mixer.worker_bytes_sent - before
            if np.array_equal(W, np.eye(n)):
                assert np.all(sent == 0), (label, sent)
            elif np.allclose(W, 1 / n):
                assert np.all(sent == row_bytes), (label, sent)
            else:
                np.testing.assert_array_equal(sent, expected_bytes(W, mine, row_bytes), err_msg=label)
            results.setdefault(label, {})[backend] = [b.clone() for b in bufs]
        if "simulated" in args.backends.split(","):
            sim = SimulatedMixer(n)
            bufs = [torch.from_numpy(x.copy()) for x in X]
            sim.mix_(bufs, W)
            for backend in mixers:
                for got, ref in zip(results[label][backend], bufs):
                    torch.testing.assert_close(got, ref[mine], rtol=1e-5, atol=1e-5, msg=f"{backend} vs simulated {label}")
        if "mpi" in mixers and "torch" in mixers and not np.allclose(W, 1 / n):
            for a, b in zip(results[label]["mpi"], results[label]["torch"]):
                assert torch.equal(a, b), f"mpi and torch neighbour mixing differ on {label}"
    world.Barrier()
    if world.rank == 0:
        print(f"contract ok: {len(results)} matrices, {n} workers, backends {args.backends}")


if __name__ == "__main__":
    main()

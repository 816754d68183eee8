"""PowerSGD C-SGD under real ranks equals a numpy implementation of the recursion on matrix regression.

    mpirun -np 4 python -m mpi4py powersgd_oracle.py --backends mpi,torch
    mpirun -np 1 python -m mpi4py powersgd_oracle.py --backends self --workers-per-rank 4

Worker i fits a (6 x 5) matrix and a bias of 6 to its own data; PowerSGD of rank 2 averages the
matrix gradient as two factors with error feedback, the bias dense.
"""
import argparse

import numpy as np
import torch
from mpi4py import MPI

from dsgd.comm import BucketLayout, Mixer, SelfCommunicator, make_communicator
from dsgd.rules import PowerSGDAveraging
from dsgd.schedules import ParallelSGD
from dsgd.rules.engine import WorkerEngine

ROWS, COLS, RANK, SAMPLES, STEPS, LR, SEED = 6, 5, 2, 20, 30, 0.05, 3


class Data:
    def __init__(self, n):
        rng = np.random.default_rng(n)
        self.X = rng.standard_normal((n, SAMPLES, COLS))
        self.Y = rng.standard_normal((n, SAMPLES, ROWS)) * 2
        self.W0, self.b0 = rng.standard_normal((ROWS, COLS)), rng.standard_normal(ROWS)

    def grads(self, i, Wm, b):
        R = self.X[i] @ Wm.T + b - self.Y[i]  # (samples, rows)
        return R.T @ self.X[i] / SAMPLES, R.mean(0)


class MatrixWorkers:
    def __init__(self, K, data, first):
        self.K, self.data, self.first = K, data, first
        self.layout = BucketLayout([torch.zeros(ROWS, COLS, dtype=torch.float64), torch.zeros(ROWS, dtype=torch.float64)])
        self.params, self.grads = self.layout.allocate(K), self.layout.allocate(K)
        for k in range(K):
            self.params[0][k] = torch.from_numpy(np.concatenate([data.W0.reshape(-1), data.b0]))

    def split(self, row):
        return row[:ROWS * COLS].reshape(ROWS, COLS), row[ROWS * COLS:]

    def compute(self):
        for k in range(self.K):
            Wm, b = self.split(self.params[0][k].numpy())
            gW, gb = self.data.grads(self.first + k, Wm, b)
            self.grads[0][k] = torch.from_numpy(np.concatenate([gW.reshape(-1), gb]))

    def optimizer_step(self):
        self.params[0].sub_(self.grads[0] * LR)

    def packed_buffers(self):
        return None

    def packed_state(self):
        return None


def oracle(data, n):
    Wm, b = data.W0.copy(), data.b0.copy()
    E = np.zeros((n, ROWS, COLS))
    Q = torch.randn(COLS, RANK, generator=torch.Generator().manual_seed(SEED)).double().numpy()
    for _ in range(STEPS):
        G = [data.grads(i, Wm, b) for i in range(n)]
        M = [G[i][0] + E[i] for i in range(n)]
        P = np.linalg.qr(np.mean([m @ Q for m in M], axis=0))[0]
        Q = np.mean([m.T @ P for m in M], axis=0)
        approx = P @ Q.T
        E = np.stack([m - approx for m in M])
        Wm = Wm - LR * approx
        b = b - LR * np.mean([g[1] for g in G], axis=0)
    return Wm, b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="mpi")
    ap.add_argument("--workers-per-rank", type=int, default=1)
    args = ap.parse_args()
    world = MPI.COMM_WORLD
    K = args.workers_per_rank
    n = world.size * K
    data = Data(n)
    Wm, b = oracle(data, n)
    for backend in args.backends.split(","):
        mixer = Mixer(SelfCommunicator() if backend == "self" else make_communicator(backend), K)
        workers = MatrixWorkers(K, data, world.rank * K)
        engine = WorkerEngine(mixer, workers, lambda t: LR)
        rule = PowerSGDAveraging(ParallelSGD(n), RANK, SEED)
        rule.attach(engine)
        assert len(rule.matrices) == 1 and len(rule.dense) == 1
        for t in range(STEPS):
            workers.compute()
            rule.step(t, engine)
        for k in range(K):
            got_W, got_b = workers.split(workers.params[0][k].numpy())
            np.testing.assert_allclose(got_W, Wm, rtol=1e-8, atol=1e-10, err_msg=f"{backend} rank {world.rank}")
            np.testing.assert_allclose(got_b, b, rtol=1e-8, atol=1e-10, err_msg=f"{backend} rank {world.rank}")
    world.Barrier()
    if world.rank == 0:
        print(f"powersgd ok: {n} workers, backends {args.backends}, {STEPS} steps")


if __name__ == "__main__":
    main()

"""1,000 steps of random directed, asymmetric, time-varying mixing finish (no deadlock) and stay exact.

    mpirun -np 5 python -m mpi4py mix_random_time_varying.py --steps 1000
"""
import argparse

import numpy as np
import torch
from mpi4py import MPI

from dsgd.comm import Mixer, make_communicator

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=1000)
ap.add_argument("--backend", default="mpi")
args = ap.parse_args()
world = MPI.COMM_WORLD
n, r = world.size, world.rank
mixer = Mixer(make_communicator(args.backend), 1)
rng = np.random.default_rng(7)  # same stream on every rank: all agree on W_t
X = rng.standard_normal((n, 64))
x = torch.from_numpy(X[r:r + 1].copy())
for t in range(args.steps):
    # each worker averages with a random subset of others: W = (I + D^-1 A) rebalanced to doubly stochastic
    perm = rng.permutation(n)
    shift = int(rng.integers(1, n)) if n > 1 else 0
    P = np.zeros((n, n))
    P[np.arange(n), perm] = 1.0
    Q = np.zeros((n, n))
    Q[np.arange(n), np.roll(np.arange(n), shift)] = 1.0
    a, b, _ = rng.dirichlet([1.0, 1.0, 1.0])
    W = a * np.eye(n) + b * P + (1 - a - b) * Q   # convex mix of permutations: doubly stochastic, directed
    X = W @ X
    mixer.mix_([x], W)
np.testing.assert_allclose(x.numpy()[0], X[r], rtol=1e-9, atol=1e-9)
if r == 0:
    print(f"time-varying ok after {args.steps} steps")

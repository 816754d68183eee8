"""A sparse step moved and summed in pipelined chunks equals the one-chunk step bit for bit.

    mpirun -np 4 python -m mpi4py mix_pipelined_bitwise.py --threads 2

The Mixer splits large CPU rows into chunks (dsgd.comm.mixer.CHUNK_BYTES); here the chunk size
is shrunk so that small buffers need many chunks, with ragged last chunks.
"""
import argparse

import numpy as np
import torch
from mpi4py import MPI

import dsgd.comm.mixer as mixer_module
import topologies
from dsgd.comm import Mixer, make_communicator

SIZES = ([1, 1023, 1025, 70_001], [300_007, 777])  # elements per buffer, one mixing call each
NO_CHUNKS = 1 << 62


def random_matrix(n, seed):
    rng = np.random.default_rng(seed)
    A = rng.random((n, n)) * (rng.random((n, n)) < 0.5) + np.eye(n)
    for _ in range(500):  # Sinkhorn balancing to doubly stochastic
        A /= A.sum(1, keepdims=True)
        A /= A.sum(0, keepdims=True)
    return A


def mixed(comm, W, sizes, dtype, chunk_bytes):
    """Buffers of this rank after two mixing steps with the given chunk size."""
    g = torch.Generator().manual_seed(comm.rank)
    X = [torch.randn(1, m, generator=g).to(dtype) for m in sizes]
    mixer_module.CHUNK_BYTES = chunk_bytes
    mixer = Mixer(comm, workers_per_rank=1)
    chunks = [len(c) for c in mixer._chunks(X)]
    for _ in range(2):
        mixer.mix_(X, W)
    return X, chunks


ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()
torch.set_num_threads(args.threads)
world = MPI.COMM_WORLD
comm = make_communicator("mpi")
matrices = [topologies.from_spec("one-peer-exponential", world.size).W(0), random_matrix(world.size, 5)]
max_chunks = 0
for W in matrices:
    for sizes in SIZES:
        for dtype in (torch.float32, torch.float64):
            for chunk_bytes in (4096, 40_000):
                want, _ = mixed(comm, W, sizes, dtype, NO_CHUNKS)
                got, chunks = mixed(comm, W, sizes, dtype, chunk_bytes)
                max_chunks = max(max_chunks, *chunks)
                for a, b in zip(got, want):
                    assert torch.equal(a, b), (sizes, dtype, chunk_bytes)
world.Barrier()
if world.rank == 0:
    print("pipelined bitwise ok, up to", max_chunks, "chunks")

"""fp16:sum=half averages: one allreduce of the payloads, summed in half precision by the backend.

    mpirun -np 2 python -m mpi4py fp16_sum_half.py --backends mpi,torch --workers-per-rank 1

Checked against references that share no code with the mixer:
  - every rank holds the same bits, and every row of a rank's K is the same average;
  - within half-precision rounding of the exact mean (numpy, float64);
  - on two ranks of one worker (one addition, whatever the backend's order): bit for bit numpy's
    float16 arithmetic, fp16(fp16(c_0 / 2) + fp16(c_1 / 2)) with c_i the decoded payloads;
  - on torch.distributed: bit for bit the gradient DistributedDataParallel averages with PyTorch's
    own fp16_compress_hook, each rank's gradient being its row;
  - where the backend cannot sum half precision, the exact mean of the default fp16 codec.
The decoded rows are the fp16 round trip bit for bit, and the bytes counted are the payload's.
"""
import argparse

import numpy as np
import torch
from mpi4py import MPI

from dsgd.comm import Mixer, make_communicator
from dsgd.compress import parse_codec

M = (301, 4096)
SEED = 5


def hook_average(rows: np.ndarray) -> np.ndarray:
    """DDP's gradient with fp16_compress_hook when this rank's gradient is `rows` (one worker per rank)."""
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.nn.parallel import DistributedDataParallel

    class Dot(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(m))

        def forward(self, v):
            return (self.p * v).sum()   # d/dp = v: the gradient is the row

    model = DistributedDataParallel(Dot(rows.shape[0]), process_group=dist.new_group())
    model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    model(torch.from_numpy(rows)).backward()
    return model.module.p.grad.numpy().copy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="mpi")
    ap.add_argument("--workers-per-rank", type=int, default=1)
    args = ap.parse_args()
    world = MPI.COMM_WORLD
    K, ranks = args.workers_per_rank, world.size
    n = ranks * K
    mine = slice(world.rank * K, world.rank * K + K)
    W = np.full((n, n), 1.0 / n)
    half, exact = parse_codec("fp16:sum=half"), parse_codec("fp16")
    checked = []
    for backend in args.backends.split(","):
        comm = make_communicator(backend)
        mixer = Mixer(comm, K)
        in_half = getattr(comm, "sums_half", lambda dtype: False)(torch.float16)
        for step in range(3):
            rng = np.random.default_rng(10 * step + 1)
            # magnitudes from 1e-6 to 1e3: partial sums round in half precision, some to subnormals
            X = [(rng.standard_normal((n, m)) * 10.0 ** rng.integers(-6, 4, size=(n, 1))).astype(np.float32)
                 for m in M]
            before = mixer.worker_bytes_sent.copy()
            decoded, mixed = mixer.compressed([torch.from_numpy(x[mine].copy()) for x in X], W, half, SEED, step)
            where = f"{backend} step {step} rank {world.rank}"
            assert np.array_equal(mixer.worker_bytes_sent - before, np.full(K, sum(2 * m for m in M))), where
            for x, d, got in zip(X, decoded, mixed):
                c = x.astype(np.float16)                      # the decoded payloads, every worker's
                assert np.array_equal(d.numpy(), c[mine].astype(np.float32)), where
                got = got.numpy()
                assert all(np.array_equal(got[0], row) for row in got), where
                everyone = world.allgather(got[0])
                assert all(np.array_equal(everyone[0], other) for other in everyone), where
                mean = c.astype(np.float64).mean(axis=0)
                if not in_half:   # the backend cannot: the exact mean, as the default codec gives
                    _, expected = mixer.compressed([torch.from_numpy(x[mine].copy())], W, exact, SEED, step)
                    assert np.array_equal(got, expected[0].numpy()), where
                    assert np.array_equal(got[0], mean.astype(np.float32)), where
                    continue
                # each term and each partial sum rounded to half precision (2^-11 relative), plus the
                # spacing of half-precision subnormals
                scale = np.abs(c.astype(np.float64)).max(axis=0) / n
                assert np.all(np.abs(got[0] - mean) <= 2 * n * 2.0 ** -11 * scale + n * 2.0 ** -24), where
                if n == 2:
                    by_hand = (c[0].astype(np.float32) / np.float32(2)).astype(np.float16) + \
                        (c[1].astype(np.float32) / np.float32(2)).astype(np.float16)
                    assert np.array_equal(got[0], by_hand.astype(np.float32)), where
                if backend == "torch" and K == 1:
                    assert np.array_equal(got[0], hook_average(x[mine][0])), where
        checked.append(f"{backend} ({'half-precision sums' if in_half else 'exact mean'})")
    world.Barrier()
    if world.rank == 0:
        print(f"fp16 sum=half ok: {', '.join(checked)}, {n} workers")


if __name__ == "__main__":
    main()

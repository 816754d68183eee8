"""The compressed mixing step equals W @ decode(encode(X)) on every rank, and only payload bytes travel.

    mpirun -np 4 python -m mpi4py mix_compressed.py --backends mpi,torch --workers-per-rank 1
    mpirun -np 1 python -m mpi4py mix_compressed.py --backends self,simulated --workers-per-rank 4

The reference decodes each worker's payload with the codec alone (tested by itself in
tests/unit/test_codecs.py) and applies the dense numpy W; the counters must equal the payload
sizes times the out-degrees.
"""
import argparse

import numpy as np
import torch
from mpi4py import MPI

import topologies
from dsgd.comm import Mixer, SelfCommunicator, SimulatedMixer, make_communicator
from dsgd.compress import Key, parse_codec

CODECS = ["none", "fp16", "bf16", "int8:block=64", "sign", "sign:block=32", "top-k:ratio=0.05", "random-k:ratio=0.1",
          "random-k:count=7,shared=true", "qsgd:levels=8"]
SPECS = ["complete", "ring", "torus", "exponential", "one-peer-exponential", "random-one-peer:seed=3",
         "random-out:s=2,seed=1", "directed-exponential"]
M = (301, 64)
SEED = 9


def cases(n):
    yield "identity", np.eye(n)
    for spec in SPECS:
        try:
            topo = topologies.from_spec(spec, n)
        except topologies.TopologyError:
            continue
        for t in range(2 if topo.time_varying else 1):
            yield f"{spec}@{t}", topo.W(t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="mpi")
    ap.add_argument("--workers-per-rank", type=int, default=1)
    args = ap.parse_args()
    world = MPI.COMM_WORLD
    K = args.workers_per_rank
    n = world.size * K
    mine = list(range(world.rank * K, world.rank * K + K))
    checked = 0
    for backend in args.backends.split(","):
        if backend == "simulated":
            mixer, rows = SimulatedMixer(n), list(range(n))
        else:
            mixer = Mixer(SelfCommunicator() if backend == "self" else make_communicator(backend), K)
            rows = mine
        for c, spec in enumerate(CODECS):
            codec = parse_codec(spec)
            for step, (label, W) in enumerate(cases(n)):
                rng = np.random.default_rng(100 * c + step)
                X = [rng.standard_normal((n, m)).astype(np.float32) for m in M]
                D = [np.stack([codec.decode(codec.encode(torch.from_numpy(x[i]), Key(SEED, step, i, part)), x.shape[1],
                                            Key(SEED, step, i, part), torch.float32).numpy() for i in range(n)])
                     for part, x in enumerate(X)]
                before, stats_before = mixer.worker_bytes_sent.copy(), mixer.stats.bytes_sent
                decoded, mixed = mixer.compressed([torch.from_numpy(x[rows].copy()) for x in X], W, codec, SEED, step)
                where = f"{backend} {spec} {label} rank {world.rank}"
                for got_d, got_m, d in zip(decoded, mixed, D):
                    assert torch.equal(got_d, torch.from_numpy(d[rows])), where
                    np.testing.assert_allclose(got_m.numpy(), (W @ d.astype(np.float64))[rows], rtol=2e-5, atol=2e-5,
                                               err_msg=where)
                payload = sum(codec.payload_bytes(m) for m in M)
                sent = mixer.worker_bytes_sent - before
                if np.array_equal(W, np.eye(n)):
                    expected = np.zeros(len(rows))
                elif np.allclose(W, 1 / n):
                    expected = np.full(len(rows), payload)
                else:
                    out_degree = (W[:, rows] != 0).sum(0) - (np.diag(W)[rows] != 0)
                    expected = out_degree * payload
                np.testing.assert_array_equal(sent, expected, err_msg=where)
                if K == 1 and backend != "simulated" and not np.allclose(W, 1 / n):
                    # what the transport was handed: payload bytes, one copy per out-neighbour
                    assert mixer.stats.bytes_sent - stats_before == expected.sum(), where
                checked += 1
    world.Barrier()
    if world.rank == 0:
        print(f"compressed ok: {checked} codec x matrix x backend steps, {n} workers, backends {args.backends}")


if __name__ == "__main__":
    main()

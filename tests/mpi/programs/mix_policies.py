"""Every mixing policy over every W shape equals the dense W @ X for each buffer it carries.

    mpirun -np 4 python -m mpi4py mix_policies.py --backends mpi,mpi-staged,torch --workers-per-rank 1
    mpirun -np 1 python -m mpi4py mix_policies.py --backends self,simulated --workers-per-rank 4

A policy is what the training loop mixes at a parameter step (dsgd.rules.engine.mix_model_):
the parameters, left in flight with --overlap, plus BatchNorm buffers (--mix-buffers) and
optimizer state (--mix-optimizer-state) mixed while they travel. Parameters and optimizer
state have the same shapes, and two parameter buckets share a shape, so any receive or
staging memory shared between steps in flight shows up as a wrong value here.
"""
import argparse
import itertools

import numpy as np
import torch
from mpi4py import MPI

import topologies
from dsgd.comm import Mixer, SelfCommunicator, SimulatedMixer, make_communicator
from dsgd.rules.engine import mix_model_

PARAM_SHAPES = [(np.float32, 513), (np.float32, 513), (np.float64, 200)]
BUFFER_SHAPES = [(np.float32, 64)]


def w_cases(n):
    """identity, average, sparse static, sparse time-varying (consecutive steps), a user matrix."""
    yield "identity", np.eye(n)
    yield "average", np.full((n, n), 1.0 / n)
    if n > 1:
        yield "ring", topologies.from_spec("ring", n).W(0)
        for spec in ("one-peer-exponential", "random-one-peer:seed=5"):
            topo = topologies.from_spec(spec, n)
            for t in range(3):
                yield f"{spec}@{t}", topo.W(t)
        rng = np.random.default_rng(n)
        A = rng.random((n, n)) * (rng.random((n, n)) < 0.5) + np.eye(n)
        for _ in range(500):
            A /= A.sum(1, keepdims=True)
            A /= A.sum(0, keepdims=True)
        yield "user-matrix", A


class Replicas:
    """The parts of a worker set mixing touches: bound parameters, in-place buffers, packed state."""

    def __init__(self, params, buffers, state):
        self.params, self.buffers, self.state = params, buffers, state

    def packed_buffers(self):
        return self.buffers

    def unpack_buffers(self, bufs):
        pass

    def packed_state(self):  # like an optimizer's state: packed into fresh buckets, copied back after
        return [s.clone() for s in self.state]

    def unpack_state(self, bufs):
        for s, b in zip(self.state, bufs):
            s.copy_(b)


def global_arrays(shapes, n, rng):
    return [rng.standard_normal((n, m)).astype(dt) for dt, m in shapes]


def make_mixers(backends, K):
    out = {}
    for b in backends:
        if b == "mpi-staged":  # the host-staging path a GPU without CUDA-aware MPI takes
            from dsgd.comm.mpi import MPICommunicator
            out[b] = Mixer(MPICommunicator(stage=True), K)
        elif b == "self":
            out[b] = Mixer(SelfCommunicator(), K)
        elif b == "simulated":
            out[b] = SimulatedMixer(K)
        else:
            out[b] = Mixer(make_communicator(b), K)
    return out


def run_case(mixer, W, rows, seed, mix_buffers, mix_state, overlap, device="cpu"):
    rng = np.random.default_rng(seed)
    n = W.shape[0]
    P, B, S = (global_arrays(PARAM_SHAPES, n, rng), global_arrays(BUFFER_SHAPES, n, rng),
               global_arrays(PARAM_SHAPES, n, rng))
    mine = lambda arrays: [torch.from_numpy(a[rows].copy()).to(device) for a in arrays]  # noqa: E731
    reps = Replicas(mine(P), mine(B), mine(S))
    pending = mix_model_(mixer, reps, W, mix_buffers, mix_state, start_only=overlap)
    if pending is not None:
        torch.randn(128, 128) @ torch.randn(128, 128)  # compute while the parameters travel
        pending.wait()
    checks = [("params", reps.params, P, True), ("buffers", reps.buffers, B, mix_buffers),
              ("state", reps.state, S, mix_state)]
    for name, got, X, mixed in checks:
        for i, (g, x) in enumerate(zip(got, X)):
            expected = (W @ x.astype(np.float64) if mixed else x)[rows]
            tol = 1e-12 if g.dtype == torch.float64 else 2e-6
            np.testing.assert_allclose(g.cpu().numpy(), expected, rtol=tol, atol=tol, err_msg=f"{name}[{i}]")


def counters(mixer):
    comm = getattr(mixer, "comm", None)
    staging = getattr(comm, "staging", None)
    return (getattr(mixer, "recv_allocations", 0), staging.allocations if staging is not None else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="mpi")
    ap.add_argument("--workers-per-rank", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="where the buffers live (cuda: the GPU path)")
    args = ap.parse_args()
    world = MPI.COMM_WORLD
    K = args.workers_per_rank
    n = world.size * K
    rows = list(range(world.rank * K, world.rank * K + K))
    mixers = make_mixers(args.backends.split(","), K)
    policies = list(itertools.product([False, True], repeat=3))
    cases = list(w_cases(n))
    checked = 0
    for backend, mixer in mixers.items():
        for sweep in range(2):  # the second sweep repeats every step: it must allocate nothing new
            if sweep == 1:
                warm = counters(mixer)
            for seed, ((label, W), policy) in enumerate(itertools.product(cases, policies)):
                try:
                    run_case(mixer, W, rows, seed, *policy, device=args.device)
                except AssertionError as e:
                    raise AssertionError(f"{backend} on rank {world.rank}, W {label}, (mix_buffers, "
                                         f"mix_state, overlap)={policy}: {e}") from None
                checked += 1
        assert counters(mixer) == warm, f"{backend}: buffers reallocated on repeated steps {warm} -> {counters(mixer)}"
    world.Barrier()
    if world.rank == 0:
        print(f"policies ok: {checked} mixes, {len(cases)} matrices x {len(policies)} policies, {n} workers, "
              f"backends {args.backends}")


if __name__ == "__main__":
    main()

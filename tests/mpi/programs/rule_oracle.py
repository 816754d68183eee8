"""Every rule under real ranks equals its numpy recursion (lsq.py) on a heterogeneous least-squares problem.

    mpirun -np 4 python -m mpi4py rule_oracle.py --backends mpi,torch --workers-per-rank 1
    mpirun -np 1 python -m mpi4py rule_oracle.py --backends self --workers-per-rank 4

Checked for 50 steps on a static and a time-varying graph (directed ones for push-sum), plus each
rule's invariant: gradient tracking's sum of trackers equals the sum of the last gradients;
push-sum preserves sum_i x_i (up to the gradient steps) and sum_i w_i.
"""
import argparse

import numpy as np
from mpi4py import MPI

import lsq
import topologies
from dsgd.comm import Mixer, SelfCommunicator, make_communicator
from dsgd.compress import parse_codec
from dsgd.rules import Choco, CompressedAveraging, Diffusion, GradientTracking, PushSum, QuasiGlobalMomentum
from dsgd.schedules import Gossip, LocalSGD, ParallelSGD

STEPS = 50


def lr(t):
    return 0.05 * 0.99 ** t  # a changing step size: the recursions must use eta_t where it belongs


def cases(n):
    doubly = ["ring", "one-peer-exponential"] if n >= 3 else ["complete", "one-peer-exponential"]
    directed = ["random-out:s=1,seed=4", "directed-exponential"]
    for spec in doubly:
        topo = topologies.from_spec(spec, n)
        yield "gradient-tracking", spec, lambda: GradientTracking(Gossip(topo)), \
            lambda p: lsq.oracle_gradient_tracking(p, topo.W, lr, STEPS)
        yield "exact-diffusion", spec, lambda: Diffusion(Gossip(topo), exact=True), \
            lambda p: lsq.oracle_diffusion(p, topo.W, lr, STEPS, exact=True)
        yield "d2", spec, lambda: Diffusion(Gossip(topo), exact=False), \
            lambda p: lsq.oracle_diffusion(p, topo.W, lr, STEPS, exact=False)
        for nesterov in (False, True):
            yield f"qgm(nesterov={nesterov})", spec, \
                lambda: QuasiGlobalMomentum(Gossip(topo), beta=0.9, mu=0.9, nesterov=nesterov), \
                lambda p: lsq.oracle_qgm(p, topo.W, lr, STEPS, 0.9, 0.9, nesterov)
        for codec in ("sign", "top-k:ratio=0.3", "random-k:count=3", "qsgd:levels=4"):
            yield f"choco({codec})", spec, lambda: Choco(Gossip(topo), parse_codec(codec), 0.4, 7), \
                lambda p: lsq.oracle_choco(p, topo.W, lr, STEPS, parse_codec(codec), 0.4, 7, topo.period)
    for codec in ("int8:block=2", "random-k:count=2", "qsgd:levels=8"):
        yield f"local-sgd-ef({codec})", "complete", \
            lambda: CompressedAveraging(LocalSGD(n, 3, STEPS), parse_codec(codec), 5), \
            lambda p: lsq.oracle_ef_local_sgd(p, 3, lr, STEPS, parse_codec(codec), 5)
        yield f"csgd-ef({codec})", "complete", lambda: CompressedAveraging(ParallelSGD(n), parse_codec(codec), 5), \
            lambda p: lsq.oracle_ef_csgd(p, lr, STEPS, parse_codec(codec), 5)
    for spec in directed + doubly[:1]:
        topo = topologies.from_spec(spec, n)
        yield "sgp", spec, lambda: PushSum(Gossip(topo)), lambda p: lsq.oracle_push_sum(p, topo.W, lr, STEPS)


def invariants(comm_sum, n, problem):
    """Checks run after every step: the sums each rule must preserve."""
    last_sum_x = [None]

    def check(t, rule, w):
        if isinstance(rule, GradientTracking):
            y, g = comm_sum(lsq.FlatWorkers.rows(rule.y)), comm_sum(lsq.FlatWorkers.rows(rule.g_prev))
            np.testing.assert_allclose(y, g, rtol=1e-9, atol=1e-9, err_msg=f"sum y != sum g_prev at step {t}")
        if isinstance(rule, PushSum):
            np.testing.assert_allclose(comm_sum(rule.w[0].numpy()), [n], rtol=1e-12, err_msg=f"sum w at step {t}")
            sum_x = comm_sum(lsq.FlatWorkers.rows(rule.x))
            before = comm_sum(problem.x0[w.first]) if last_sum_x[0] is None else last_sum_x[0]
            step = lr(t) * comm_sum(lsq.FlatWorkers.rows(w.grads))  # the only change mixing must not add to
            np.testing.assert_allclose(sum_x, before - step, rtol=1e-9, atol=1e-9, err_msg=f"sum x at step {t}")
            last_sum_x[0] = sum_x
    return check


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="mpi")
    ap.add_argument("--workers-per-rank", type=int, default=1)
    args = ap.parse_args()
    world = MPI.COMM_WORLD
    K = args.workers_per_rank
    n = world.size * K
    mine = list(range(world.rank * K, world.rank * K + K))
    problem = lsq.Problem(n, seed=n)

    def comm_sum(rows):
        total = np.array(rows.sum(axis=0), dtype=np.float64)
        world.Allreduce(MPI.IN_PLACE, total, op=MPI.SUM)
        return total

    references = lsq.References(world)
    checked = 0
    for backend in args.backends.split(","):
        comm = SelfCommunicator() if backend == "self" else make_communicator(backend)
        mixer = Mixer(comm, K)
        for name, spec, make_rule, oracle in cases(n):
            check = invariants(comm_sum, n, problem)
            got = lsq.run_rule(make_rule(), mixer, problem, mine, lr, STEPS, after_step=check)
            expected = references.get((name, spec), oracle, problem)[mine]
            np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9,
                                       err_msg=f"{name} on {spec}, backend {backend}, rank {world.rank}")
            checked += 1
    world.Barrier()
    if world.rank == 0:
        print(f"rules ok: {checked} rule x graph x backend runs of {STEPS} steps, {n} workers")


if __name__ == "__main__":
    main()

"""Elastic mode's pieces without MPI: the graph rebuilt over the survivors, what each rule's state
becomes, the step's snapshot, and the one-line refusals. The kill -9 under real ranks is
tests/mpi/test_elastic.py."""
import numpy as np
import pytest
import torch

import dsgd
import topologies
from dsgd.elastic import MembershipChange, state
from dsgd.elastic.snapshot import Snapshot
from dsgd.elastic.topology import rebuild
from library_models import LR0, LeastSquares, lsq

N = 4


@pytest.mark.parametrize("family, n, new_n, spec, fallback", [
    ("torus", 12, 9, "torus:rows=3,cols=3", False),
    ("torus", 9, 6, "ring", True),                 # 6 = 2 x 3: no torus with both sides >= 3
    ("ring", 4, 3, "ring", False),
    ("ring", 4, 2, "complete", True),              # a ring needs 3 workers
    ("hypercube", 8, 6, "ring", True),
    ("exponential", 8, 7, "exponential", False),
    ("one-peer-exponential", 8, 6, "one-peer-exponential", False),
    ("directed-exponential", 8, 6, "directed-exponential", False),
])
def test_the_same_family_is_rebuilt_at_the_new_n_or_a_ring_with_the_reason(family, n, new_n, spec, fallback):
    topo, why = rebuild(topologies.build(family, n), new_n)
    assert (topo.spec, topo.n, why is not None) == (spec, new_n, fallback)
    if fallback:
        assert f"{family} cannot be built on {new_n} workers" in why and "\n" not in why


def test_a_users_own_matrix_has_one_size_so_the_survivors_get_a_ring():
    topo, why = rebuild(topologies.from_matrix(topologies.build("ring", 5).W()), 4)
    assert topo.spec == "ring" and "fixed number of workers" in why


def setup(algorithm, momentum=0.0):
    problem = lsq.Problem(N, seed=1)
    models = [LeastSquares(problem, i) for i in range(N)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=LR0, momentum=momentum) for m in models]
    opt = dsgd.DecentralizedOptimizer(optimizers, models, algorithm, dsgd.start("self", workers_per_rank=N),
                                      broadcast=False, bucket_bytes=32)
    return models, opt


def steps(opt, models, count):
    for _ in range(count):
        opt.zero_grad()
        for m in models:
            m().backward()
        opt.step()


def test_gradient_tracking_restarts_its_tracker_at_the_survivors_gradients():
    models, opt = setup(dsgd.algorithms.gradient_tracking("ring"))
    steps(opt, models, 3)
    rule, graph, why = state.resize(opt.rule, N, opt.engine)
    assert (rule.started, graph, why) == (False, "ring", None)
    opt.rule = rule
    opt.zero_grad()
    for m in models:
        m().backward()
    g = [b.clone() for b in opt.engine.decayed_gradients()]
    opt.step()
    # y_i <- g_i at the step after the change, then mixed with a doubly stochastic W: sum y = sum g
    assert all(torch.equal(gp, g0) for gp, g0 in zip(rule.g_prev, g))
    for y, g0 in zip(rule.y, g):
        torch.testing.assert_close(y.sum(0), g0.sum(0), rtol=0, atol=1e-14)


def test_push_sum_weights_restart_at_one_and_numerators_at_the_parameters():
    models, opt = setup(dsgd.algorithms.push_sum("random-out"))   # weights drift from 1
    steps(opt, models, 3)
    assert float(opt.rule.w[0].sum()) == pytest.approx(N) and not torch.all(opt.rule.w[0] == 1)
    before = [p.clone() for p in opt.workers.params]
    rule, _, _ = state.resize(opt.rule, N, opt.engine)
    assert torch.equal(rule.w[0], torch.ones(N, 1, dtype=torch.float64))   # sum of weights = n
    assert all(torch.equal(x, p) for x, p in zip(rule.x, before))
    assert all(torch.equal(p, b) for p, b in zip(opt.workers.params, before))   # no parameter moved


def test_choco_public_copies_become_the_parameters_and_accumulators_w_times_them():
    models, opt = setup(dsgd.algorithms.choco("ring", "sign", 0.4, seed=7))
    steps(opt, models, 3)
    rule, _, _ = state.resize(opt.rule, N, opt.engine)
    W = topologies.build("ring", N).W()
    for x_hat, s, x in zip(rule.x_hat, rule.s, opt.workers.params):
        assert torch.equal(x_hat, x)
        np.testing.assert_allclose(s.numpy(), W @ x.numpy(), rtol=0, atol=1e-15)


def test_a_failed_step_is_undone_by_the_snapshot_momentum_and_rule_state_included():
    models, opt = setup(dsgd.algorithms.gradient_tracking("ring"), momentum=0.9)
    steps(opt, models, 2)
    snap = Snapshot()
    snap.save(opt)
    saved = [t.clone() for t in (*opt.workers.params, *opt.rule.y, *opt.rule.g_prev)]
    steps(opt, models, 1)
    snap.restore(opt)
    now = [*opt.workers.params, *opt.rule.y, *opt.rule.g_prev]
    assert all(torch.equal(a, b) for a, b in zip(now, saved)) and opt.steps == 2


def test_momentum_a_failed_first_step_created_is_dropped_again():
    models, opt = setup(dsgd.algorithms.dsgd("ring"), momentum=0.9)
    snap = Snapshot()
    snap.save(opt)
    steps(opt, models, 1)
    assert opt.optimizers[0].state
    snap.restore(opt)
    assert not any(o.state for o in opt.optimizers) and opt.steps == 0


@pytest.mark.parametrize("algorithm, words", [
    (dsgd.algorithms.exact_diffusion("ring"), "does not know what Diffusion's state becomes"),
    (dsgd.algorithms.dsgd("ring", overlap=True), "use overlap=False"),
    (dsgd.algorithms.dsgd("hierarchical:group=2"), "hierarchical topology"),
])
def test_rules_elastic_mode_cannot_carry_are_refused_in_one_line(algorithm, words):
    why = state.unsupported(algorithm.build(N, lambda: LR0))
    assert words in why and "\n" not in why
    world = dsgd.start("self", workers_per_rank=N)
    world.elastic = True   # as dsgd.start("mpi", elastic=True) marks it: the refusal comes at wrapping
    problem = lsq.Problem(N, seed=1)
    models = [LeastSquares(problem, i) for i in range(N)]
    with pytest.raises(ValueError, match=words.split("'")[0]):
        dsgd.DecentralizedOptimizer([torch.optim.SGD(m.parameters(), lr=LR0) for m in models], models, algorithm,
                                    world)


@pytest.mark.parametrize("algorithm", [dsgd.algorithms.dsgd("exponential"), dsgd.algorithms.csgd(),
                                       dsgd.algorithms.local_sgd(4), dsgd.algorithms.gradient_tracking("ring"),
                                       dsgd.algorithms.push_sum(), dsgd.algorithms.choco("ring")])
def test_rules_elastic_mode_carries(algorithm):
    assert state.unsupported(algorithm.build(N, lambda: LR0)) is None


def test_the_torch_backend_is_refused_at_start_in_one_line():
    with pytest.raises(ValueError) as e:
        dsgd.start("torch", elastic=True)
    assert "needs the mpi backend" in str(e.value) and "\n" not in str(e.value)


def test_a_membership_change_is_one_line():
    change = MembershipChange(5, (2,), (4, 5), 8, 6, "ring", None, 0.31)
    assert change.line() == "elastic: step 5: lost rank 2 (workers 4, 5); 8 -> 6 workers, topology ring, " \
                            "recovered in 0.31s"
    fallback = MembershipChange(7, (1, 2), (1, 2), 4, 2, "complete", "ring cannot be built on 2 workers", 1.0)
    assert fallback.line().endswith("; ring cannot be built on 2 workers") and "lost ranks 1, 2" in fallback.line()


class FakeMPI:
    """Just what fault_tolerance_problem reads of mpi4py's MPI module."""

    class Exception(Exception):
        pass

    def __init__(self, library="Open MPI v5.0.11", ulfm=True, agrees=True):
        self.library = library
        self.Comm = type("Comm", (), {n: None for n in ("Agree", "Shrink", "Revoke")} if ulfm else {})
        self.COMM_SELF = self

    def Get_library_version(self):
        return self.library

    def Agree(self, flag):
        return flag


@pytest.mark.parametrize("mpi, env, words", [
    (FakeMPI(), {"OMPI_MCA_mpi_ft_enable": "1"}, None),
    (FakeMPI(), {}, "this job was started without it"),
    (FakeMPI(), {"OMPI_MCA_mpi_ft_enable": "0"}, "this job was started without it"),
    (FakeMPI(ulfm=False), {"OMPI_MCA_mpi_ft_enable": "1"}, "no Comm.Agree/Shrink/Revoke"),
    (FakeMPI(library="MPICH Version: 4.2"), {}, None),   # another MPI: the agreement on COMM_SELF decides
])
def test_fault_tolerance_is_checked_at_start_and_its_absence_said_in_one_line(monkeypatch, mpi, env, words):
    from dsgd.comm.ulfm import fault_tolerance_problem
    monkeypatch.delenv("OMPI_MCA_mpi_ft_enable", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    why = fault_tolerance_problem(mpi)
    if words is None:
        assert why is None
    else:
        assert words in why and "mpirun --with-ft ulfm" in why and "\n" not in why

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
from dsgd.rules import OptimizerRule
from dsgd.schedules import ParallelSGD
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


# -- a change of membership in one process: what the ranks holding the surviving workers see --------
KEEP = [0, 1, 4, 5]   # of 6 workers, 2 per rank: the rank holding workers 2 and 3 is lost


def job(algorithm, n=6, momentum=0.0, same_start=False):
    problem = lsq.Problem(n, seed=1)
    models = [LeastSquares(problem, i) for i in range(n)]
    if same_start:   # as broadcast=True gives: every worker starts from worker 0's parameters
        for m in models[1:]:
            m.load_state_dict(models[0].state_dict())
    optimizers = [torch.optim.SGD(m.parameters(), lr=LR0, momentum=momentum) for m in models]
    opt = dsgd.DecentralizedOptimizer(optimizers, models, algorithm, dsgd.start("self", workers_per_rank=n),
                                      broadcast=False, bucket_bytes=32)
    return problem, models, opt


def lose(opt, models, algorithm, keep=KEEP):
    """The survivors after a change: their models and torch optimizers wrapped again over len(KEEP)
    workers, and the old rule (built at the old n) holding just their rows of its state, as the ranks
    that hold them do; state.resize makes the survivors' rule. (optimizer, graph, why)."""
    opt.finish()
    n = len(models)
    world = dsgd.start("self", workers_per_rank=len(keep))
    new = dsgd.DecentralizedOptimizer([opt.optimizers[i] for i in keep], [models[i] for i in keep],
                                      dsgd.algorithms.csgd(), world, broadcast=False, bucket_bytes=32)
    new.steps = opt.steps
    old = algorithm.build(n, lambda: LR0)
    old.attach(new.engine)
    saved = opt.rule.state_dict()
    rows = {name: [b if name in old.shared_names else b[keep] for b in buffers]
            for name, buffers in saved["buffers"].items()}
    old.load_state_dict({"buffers": rows, "scalars": saved["scalars"],
                         **({"outer": [saved["outer"][i] for i in keep]} if "outer" in saved else {})})
    if type(old) is OptimizerRule:
        old.schedule = opt.rule.schedule   # QSR's rounds decided so far live in its schedule
    new.rule, graph, why = state.resize(old, len(keep), new.engine)
    return new, graph, why


def flat(buffers, keep=slice(None)):
    """Rows KEEP of (K, m) buckets as one (workers, 7) array, in model order."""
    return torch.cat(list(buffers), dim=1)[keep].numpy().copy()


def xs(models):
    return np.stack([m.x() for m in models])


@pytest.mark.parametrize("algorithm, family, exact", [(dsgd.algorithms.exact_diffusion("ring"), "ring", True),
                                                      (dsgd.algorithms.d2("exponential"), "exponential", False)])
def test_diffusion_restarts_as_at_its_first_step_so_the_survivors_mean_moves_by_their_mean_gradient(
        algorithm, family, exact):
    problem, models, opt = job(algorithm)
    steps(opt, models, 3)
    new, graph, why = lose(opt, models, algorithm)
    assert (new.rule.started, new.rule.exact, graph, why) == (False, exact, family, None)
    survivors = [models[i] for i in KEEP]
    W = topologies.build(family, len(KEEP)).W(0)
    M = (np.eye(len(KEEP)) + W) / 2 if exact else W
    X = xs(survivors)
    G = problem.grad(X, KEEP)
    steps(new, survivors, 1)   # a first step: x <- mix(x - eta g, M)
    np.testing.assert_allclose(xs(survivors), M @ (X - LR0 * G), rtol=0, atol=1e-13)
    for _ in range(4):   # so sum_i (x_i^t - x_i^{t-1} + eta g_i^{t-1}) = 0 over the survivors from then on
        X = xs(survivors)
        G = problem.grad(X, KEEP)
        steps(new, survivors, 1)
        np.testing.assert_allclose(xs(survivors).mean(0), X.mean(0) - LR0 * G.mean(0), rtol=0, atol=1e-13)


def test_d2_whose_rebuilt_graph_fails_its_eigenvalue_bound_mixes_with_exact_diffusions_matrix():
    algorithm = dsgd.algorithms.d2("ring")   # a ring's smallest eigenvalue: -0.206 on 5 workers, -1/3 on 4
    problem, models, opt = job(algorithm, n=5)
    steps(opt, models, 2)
    new, graph, why = lose(opt, models, algorithm, keep=[0, 1, 3, 4])
    assert new.rule.exact and not new.rule.started and graph == "ring"
    assert "eigenvalues above -1/3" in why and "-0.3333" in why and "exact diffusion's (I + W) / 2 instead" in why
    assert "\n" not in why


def test_quasi_global_momentum_keeps_each_survivors_buffer_and_goes_on_over_the_new_graph():
    beta, mu = 0.9, 0.8
    algorithm = dsgd.algorithms.qgm("ring", momentum=beta, buffer_factor=mu)
    problem, models, opt = job(algorithm)
    steps(opt, models, 3)
    m_hat = flat(opt.rule.m_hat, KEEP)
    new, _, _ = lose(opt, models, algorithm)
    assert np.array_equal(flat(new.rule.m_hat), m_hat) and np.abs(m_hat).min() > 0
    survivors = [models[i] for i in KEEP]
    X = xs(survivors)
    W = topologies.build("ring", len(KEEP)).W(0)
    X_new = W @ (X - LR0 * (problem.grad(X, KEEP) + beta * m_hat))   # the paper's step with the kept m_hat
    steps(new, survivors, 1)
    np.testing.assert_allclose(xs(survivors), X_new, rtol=0, atol=1e-13)
    np.testing.assert_allclose(flat(new.rule.m_hat), mu * m_hat + (1 - mu) * (X - X_new) / LR0, rtol=0, atol=1e-11)


def outer_momentum(rule, keep=slice(None)):
    """Each worker's outer Nesterov/SGD momentum as a (workers, 7) array."""
    return np.stack([torch.cat([o.state[p]["momentum_buffer"].reshape(-1) for p in o.param_groups[0]["params"]]).numpy()
                     for o in rule.outer])[keep]


def test_diloco_over_the_average_keeps_the_one_anchor_and_outer_momentum_the_survivors_share():
    algorithm = dsgd.algorithms.diloco(2)   # Nesterov outside: lr 0.7, momentum 0.9
    problem, models, opt = job(algorithm, same_start=True)
    steps(opt, models, 3)   # a round ended at step 1; step 2 began the next
    anchor, momentum = flat(opt.rule.anchor, KEEP), outer_momentum(opt.rule, KEEP)
    new, graph, why = lose(opt, models, algorithm)
    assert (graph, why) == ("average", None)
    assert np.array_equal(flat(new.rule.anchor), anchor) and np.array_equal(outer_momentum(new.rule), momentum)
    assert (anchor == anchor[0]).all() and (momentum == momentum[0]).all()   # one anchor: the survivors agree
    survivors = [models[i] for i in KEEP]
    X = xs(survivors)
    X_end = X - LR0 * problem.grad(X, KEEP)                # the round's last inner step (SGD)
    delta = (anchor - X_end).mean(0)                       # averaged over the 4 survivors
    m = 0.9 * momentum[0] + delta
    a = anchor[0] - 0.7 * (delta + 0.9 * m)
    steps(new, survivors, 1)
    np.testing.assert_allclose(flat(new.rule.anchor), np.tile(a, (len(KEEP), 1)), rtol=0, atol=1e-13)
    assert (flat(new.rule.anchor) == flat(new.rule.anchor)[0]).all() and np.array_equal(xs(survivors),
                                                                                      flat(new.rule.anchor))


def test_gossip_diloco_keeps_each_workers_anchor_and_the_survivors_mean_anchor_follows_their_mean_round():
    # outer SGD with lr 1 and no momentum over a doubly stochastic W: the mean anchor becomes the mean end point
    algorithm = dsgd.algorithms.diloco(2, "ring", outer="sgd", outer_lr=1.0, outer_momentum=0.0)
    problem, models, opt = job(algorithm)
    steps(opt, models, 3)
    anchor = flat(opt.rule.anchor, KEEP)
    new, graph, _ = lose(opt, models, algorithm)
    assert graph == "ring" and np.array_equal(flat(new.rule.anchor), anchor) and not (anchor == anchor[0]).all()
    survivors = [models[i] for i in KEEP]
    X = xs(survivors)
    X_end = X - LR0 * problem.grad(X, KEEP)
    steps(new, survivors, 1)
    np.testing.assert_allclose(flat(new.rule.anchor).mean(0), X_end.mean(0), rtol=0, atol=1e-13)


@pytest.mark.parametrize("algorithm, names", [
    (dsgd.algorithms.csgd("sign"), ("e_grad",)),
    (dsgd.algorithms.local_sgd(2, "sign"), ("e_model", "x_sync")),
    (dsgd.algorithms.diloco(2, "ring", compress="sign"), ("memory", "anchor")),
])
def test_error_feedback_residuals_are_each_survivors_own_and_kept(algorithm, names):
    problem, models, opt = job(algorithm, same_start=True)
    steps(opt, models, 3)
    before = {name: flat(getattr(opt.rule, name), KEEP) for name in names}
    new, _, _ = lose(opt, models, algorithm)
    for name in names:
        assert np.array_equal(flat(getattr(new.rule, name)), before[name]), name
    assert np.abs(before[names[0]]).max() > 0   # compression left something undelivered


def test_compressed_csgd_averages_the_survivors_compressed_residuals_after_a_change():
    algorithm = dsgd.algorithms.csgd("sign")
    problem, models, opt = job(algorithm)
    steps(opt, models, 3)
    e = flat(opt.rule.e_grad, KEEP)
    new, graph, _ = lose(opt, models, algorithm)
    survivors = [models[i] for i in KEEP]
    X = xs(survivors)
    E = e + problem.grad(X, KEEP)                           # each survivor's kept residual plus its gradient
    C = lsq.compress_rows(dsgd.compress.parse_codec("sign"), E, 0, 3)   # keyed by the new worker numbers
    steps(new, survivors, 1)
    assert graph == "average"
    np.testing.assert_allclose(xs(survivors), X - LR0 * C.mean(0), rtol=0, atol=1e-13)
    np.testing.assert_allclose(flat(new.rule.e_grad), E - C, rtol=0, atol=1e-13)


def test_powersgd_keeps_each_survivors_residual_and_the_warm_start_every_worker_shares():
    torch.manual_seed(0)
    n, data = 6, torch.randn(8, 5)
    models = [torch.nn.Linear(5, 4) for _ in range(n)]   # a 4 x 5 weight: rank 1 sends 9 numbers, not 20
    optimizers = [torch.optim.SGD(m.parameters(), lr=LR0) for m in models]
    algorithm = dsgd.algorithms.csgd("powersgd:rank=1")
    opt = dsgd.DecentralizedOptimizer(optimizers, models, algorithm, dsgd.start("self", workers_per_rank=n),
                                      broadcast=False, bucket_bytes=32)

    def step(opt, models):
        opt.zero_grad()
        for i, m in enumerate(models):
            (m(data * (1 + i)) ** 2).mean().backward()
        opt.step()

    for _ in range(3):
        step(opt, models)
    e, q = flat(opt.rule.e, KEEP), [t.clone() for t in opt.rule.q]
    new, graph, _ = lose(opt, models, algorithm)
    assert graph == "average" and np.array_equal(flat(new.rule.e), e) and np.abs(e).max() > 0
    assert all(torch.equal(a, b) for a, b in zip(new.rule.q, q))
    step(new, [models[i] for i in KEEP])
    g = flat(new.workers.grads)   # what every survivor stepped on: the same rank-1 average
    assert (g == g[0]).all()


def test_streaming_diloco_keeps_its_anchors_and_lands_an_exchange_in_flight_as_it_would_have():
    algorithm = dsgd.algorithms.streaming_diloco(4, fragments=2, delay=2, alpha=0.5)
    runs = [job(algorithm, same_start=True) for _ in range(2)]   # the second loses nobody
    for _, models, opt in runs:
        steps(opt, models, 4)   # fragment 0 (the 4-entry tensor) started its exchange at step 3, due at step 5
    (_, models, opt), (_, whole, full) = runs
    opt.finish()   # elastic mode finishes every exchange inside the step that starts it
    assert opt.rule.due == [5, -1]
    anchor, inbox, momentum = flat(opt.rule.anchor, KEEP), opt.rule.inbox[0][KEEP].clone(), [
        o.state_dict() for k in KEEP for o in opt.rule.outer[k]]
    new, graph, _ = lose(opt, models, algorithm)
    assert graph == "average" and new.rule.due == [5, -1] and new.rule.pending == [None, None]
    assert np.array_equal(flat(new.rule.anchor), anchor) and torch.equal(new.rule.inbox[0], inbox)
    kept = [o.state_dict() for per_worker in new.rule.outer for o in per_worker]
    assert all(torch.equal(a["state"][i]["momentum_buffer"], b["state"][i]["momentum_buffer"])
               for a, b in zip(kept, momentum) for i in a["state"])
    survivors = [models[i] for i in KEEP]
    steps(new, survivors, 2)
    steps(full, whole, 2)
    # at step 5 fragment 0 landed with the value mixed over the 6 workers: as in the run that lost nobody
    assert np.array_equal(flat(new.rule.anchor)[:, :4], flat(full.rule.anchor, KEEP)[:, :4])
    assert np.array_equal(xs(survivors)[:, :4], xs([whole[i] for i in KEEP])[:, :4])
    assert (flat(new.rule.anchor) == flat(new.rule.anchor)[0]).all()   # the survivors' anchors still agree


def test_exchanges_the_old_communicator_left_with_the_engine_are_dropped_at_a_change():
    models, opt = setup(dsgd.algorithms.streaming_diloco(4, delay=2))
    opt.engine.background, opt.engine.in_flight = ["a chain on the old communicator"], "a mix on it"
    state.resize(opt.rule, N, opt.engine)
    assert opt.engine.background == [] and opt.engine.in_flight is None


def test_sparta_has_no_state_and_mixes_over_the_survivors():
    algorithm = dsgd.algorithms.sparta(1.0)   # every coordinate averaged after every step
    problem, models, opt = job(algorithm)
    steps(opt, models, 2)
    new, graph, _ = lose(opt, models, algorithm)
    survivors = [models[i] for i in KEEP]
    X = xs(survivors)
    steps(new, survivors, 1)
    assert graph == "average"
    np.testing.assert_allclose(xs(survivors), np.tile((X - LR0 * problem.grad(X, KEEP)).mean(0), (len(KEEP), 1)),
                               rtol=0, atol=1e-14)


def test_qsr_keeps_the_rounds_it_decided_and_averages_over_the_survivors():
    algorithm = dsgd.algorithms.qsr(2, alpha=0.1)   # at lr 0.05: rounds of (0.1 / 0.05)^2 = 4 steps
    problem, models, opt = job(algorithm)
    steps(opt, models, 2)
    assert opt.rule.schedule._round_starts == [0, 4]
    for g in opt.param_groups:
        g["lr"] = 0.01   # a round starting now would last 100 steps
    new, graph, _ = lose(opt, models, algorithm)
    assert graph == "average" and new.rule.schedule._round_starts == [0, 4] and new.rule.schedule.n_workers == 4
    assert new.rule.schedule.action(3).sync   # the round in progress keeps its length
    survivors = [models[i] for i in KEEP]
    steps(new, survivors, 2)
    assert (xs(survivors) == xs(survivors)[0]).all()


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


class Halving(dsgd.Rule):
    """A rule of one's own that elastic mode was not told about."""

    def __init__(self, n):
        self.schedule = ParallelSGD(n)

    def step(self, t, engine):
        engine.optimizer_step()


def test_the_snapshot_puts_back_the_outer_optimizers_a_failed_step_moved():
    models, opt = setup(dsgd.algorithms.diloco(2))
    snap = Snapshot()
    snap.save(opt)
    steps(opt, models, 2)   # a failed first round would leave outer momentum behind
    assert all(o.state for o in opt.rule.outer)
    snap.restore(opt)
    assert not any(o.state for o in opt.rule.outer)
    steps(opt, models, 2)
    snap.save(opt)
    saved = [outer_momentum(opt.rule).copy(), flat(opt.rule.anchor)]
    steps(opt, models, 2)   # the next round moves the anchors and the momentum
    assert not np.array_equal(outer_momentum(opt.rule), saved[0])
    snap.restore(opt)
    assert np.array_equal(outer_momentum(opt.rule), saved[0]) and np.array_equal(flat(opt.rule.anchor), saved[1])


@pytest.mark.parametrize("algorithm, words", [
    (Halving, "does not know what Halving's state becomes"),
    (dsgd.algorithms.dsgd("ring", overlap=True), "use overlap=False"),
    (dsgd.algorithms.dsgd("hierarchical:group=2"), "hierarchical topology"),
    (dsgd.algorithms.streaming_diloco(4, topology_spec="hierarchical:group=2"), "hierarchical topology"),
])
def test_what_elastic_mode_cannot_carry_is_refused_in_one_line(algorithm, words):
    build = algorithm if isinstance(algorithm, type) else lambda n: algorithm.build(n, lambda: LR0)
    why = state.unsupported(build(N))
    assert words in why and "\n" not in why
    world = dsgd.start("self", workers_per_rank=N)
    world.elastic = True   # as dsgd.start("mpi", elastic=True) marks it: the refusal comes at wrapping
    problem = lsq.Problem(N, seed=1)
    models = [LeastSquares(problem, i) for i in range(N)]
    with pytest.raises(ValueError, match=words.split("'")[0]):
        dsgd.DecentralizedOptimizer([torch.optim.SGD(m.parameters(), lr=LR0) for m in models], models,
                                    algorithm if isinstance(algorithm, dsgd.Algorithm) else build(N), world)


@pytest.mark.parametrize("algorithm", [
    dsgd.algorithms.dsgd("exponential"), dsgd.algorithms.csgd(), dsgd.algorithms.local_sgd(4),
    dsgd.algorithms.postlocal([4], [1, 2]), dsgd.algorithms.qsr(2, 0.1), dsgd.algorithms.gradient_tracking("ring"),
    dsgd.algorithms.push_sum(), dsgd.algorithms.choco("ring"), dsgd.algorithms.exact_diffusion("ring"),
    dsgd.algorithms.d2("exponential"), dsgd.algorithms.qgm("ring"), dsgd.algorithms.diloco(4),
    dsgd.algorithms.diloco(4, "ring", outer="sgd", compress="sign"), dsgd.algorithms.streaming_diloco(4),
    dsgd.algorithms.streaming_diloco(4, topology_spec="exponential"), dsgd.algorithms.sparta(0.5),
    dsgd.algorithms.sparta(0.5, "ring"), dsgd.algorithms.csgd("sign"), dsgd.algorithms.local_sgd(4, "top-k:ratio=0.5"),
    dsgd.algorithms.csgd("powersgd:rank=1"),
])
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

"""dsgd as a library: the user's own model, optimizer and loop, with a rule on the optimizer.

Every rule driven through `dsgd.DecentralizedOptimizer` follows the numpy recursion of its paper
(tests/mpi/programs/lsq.py) with the learning rate a torch scheduler sets; what the user's loop may do
(zero_grad in any form, accumulate gradients, save and resume, evaluate the average) keeps the run
exact. Here all 4 workers sit in one process (`dsgd.start("self", workers_per_rank=4)`); the same
under real ranks is tests/mpi/test_library.py."""
import copy
import io

import networkx as nx
import numpy as np
import pytest
import torch

import dsgd
import topologies
from library_models import LR0, LeastSquares, lr, lsq, train

N, STEPS = 4, 30


def setup(algorithm, momentum=0.0, problem=None):
    problem = problem or lsq.Problem(N, seed=1)
    world = dsgd.start("self", workers_per_rank=N)
    models = [LeastSquares(problem, i) for i in range(N)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=LR0, momentum=momentum) for m in models]
    # every worker starts at its own x0, as the oracles do (broadcast=True would start them at worker 0's);
    # buckets of 4 and 3 float64 entries, as the oracles compress them
    return problem, models, dsgd.DecentralizedOptimizer(optimizers, models, algorithm, world, broadcast=False,
                                                        bucket_bytes=32)


def xs(models):
    return np.stack([m.x() for m in models])


RING = topologies.from_spec("ring", N)
EXPO = topologies.from_spec("one-peer-exponential", N)
PUSH = topologies.from_spec("directed-exponential", N)
AVERAGE = np.full((N, N), 1.0 / N)
RULES = {
    "dsgd (spec)": (dsgd.algorithms.dsgd("ring"), lambda p: lsq.oracle_dsgd(p, RING.W, lr, STEPS)),
    "dsgd (networkx graph)": (dsgd.algorithms.dsgd(nx.cycle_graph(N)),
                              lambda p: lsq.oracle_dsgd(p, topologies.from_graph(nx.cycle_graph(N)).W, lr, STEPS)),
    "dsgd (numpy W)": (dsgd.algorithms.dsgd(RING.W(0)), lambda p: lsq.oracle_dsgd(p, RING.W, lr, STEPS)),
    "dsgd (time-varying)": (dsgd.algorithms.dsgd("one-peer-exponential"),
                            lambda p: lsq.oracle_dsgd(p, EXPO.W, lr, STEPS)),
    "gradient tracking": (dsgd.algorithms.gradient_tracking("ring"),
                          lambda p: lsq.oracle_gradient_tracking(p, RING.W, lr, STEPS)),
    "exact diffusion": (dsgd.algorithms.exact_diffusion("ring"),
                        lambda p: lsq.oracle_diffusion(p, RING.W, lr, STEPS, exact=True)),
    "d2": (dsgd.algorithms.d2("one-peer-exponential"),
           lambda p: lsq.oracle_diffusion(p, EXPO.W, lr, STEPS, exact=False)),
    "quasi-global momentum": (dsgd.algorithms.qgm("ring", momentum=0.9, buffer_factor=0.9),
                              lambda p: lsq.oracle_qgm(p, RING.W, lr, STEPS, 0.9, 0.9)),
    "push-sum": (dsgd.algorithms.push_sum("directed-exponential"),
                 lambda p: lsq.oracle_push_sum(p, PUSH.W, lr, STEPS)),
    "choco (sign)": (dsgd.algorithms.choco("ring", "sign", 0.4, seed=7),
                     lambda p: lsq.oracle_choco(p, RING.W, lr, STEPS, dsgd.library.algorithms.parse_codec("sign"),
                                                0.4, 7, RING.period)),
    "diloco": (dsgd.algorithms.diloco(period=5, outer_lr=0.7, outer_momentum=0.9),
               lambda p: lsq.oracle_diloco(p, lambda r: AVERAGE, 5, lr, STEPS, 0.7, 0.9)),
    "gossip diloco (ring)": (dsgd.algorithms.diloco(period=5, topology_spec="ring"),
                             lambda p: lsq.oracle_diloco(p, RING.W, 5, lr, STEPS, 0.7, 0.9)),
    "gossip diloco (one peer, time-varying)": (dsgd.algorithms.diloco(period=3, topology_spec="one-peer-exponential"),
                                               lambda p: lsq.oracle_diloco(p, EXPO.W, 3, lr, STEPS, 0.7, 0.9)),
    "diloco (int8 outer gradients)": (dsgd.algorithms.diloco(period=5, compress="int8:block=2", seed=3),
                                      lambda p: lsq.oracle_diloco(p, lambda r: AVERAGE, 5, lr, STEPS, 0.7, 0.9,
                                                                  dsgd.library.algorithms.parse_codec("int8:block=2"),
                                                                  3)),
    "diloco (sign outer gradients, ring)": (
        dsgd.algorithms.diloco(period=5, topology_spec="ring", compress="sign"),
        lambda p: lsq.oracle_diloco(p, RING.W, 5, lr, STEPS, 0.7, 0.9, dsgd.library.algorithms.parse_codec("sign"))),
    "streaming diloco": (dsgd.algorithms.streaming_diloco(period=6, fragments=2, delay=1, alpha=0.5),
                         lambda p: lsq.oracle_streaming_diloco(p, lambda r: AVERAGE, 6, lr, STEPS, 0.7, 0.9, 1, 0.5)),
    "streaming diloco (ring, no delay)": (
        dsgd.algorithms.streaming_diloco(period=4, fragments=2, delay=0, alpha=0.25, topology_spec="ring"),
        lambda p: lsq.oracle_streaming_diloco(p, RING.W, 4, lr, STEPS, 0.7, 0.9, 0, 0.25)),
    "sparta (average)": (dsgd.algorithms.sparta(0.5, seed=2),
                         lambda p: lsq.oracle_sparta(p, lambda t: AVERAGE, lr, STEPS, 0.5, 2)),
    "sparta (one peer)": (dsgd.algorithms.sparta(0.3, topology_spec="one-peer-exponential", seed=4),
                          lambda p: lsq.oracle_sparta(p, EXPO.W, lr, STEPS, 0.3, 4)),
    "csgd (int8, error feedback)": (dsgd.algorithms.csgd("int8:block=2", seed=5),
                                    lambda p: lsq.oracle_ef_csgd(p, lr, STEPS,
                                                                 dsgd.library.algorithms.parse_codec("int8:block=2"), 5)),
}


@pytest.mark.parametrize("name", RULES)
def test_each_rule_through_the_api_follows_its_numpy_recursion(name):
    algorithm, oracle = RULES[name]
    problem, models, opt = setup(algorithm)
    train(opt, models, STEPS)
    np.testing.assert_allclose(xs(models), oracle(problem), rtol=1e-9, atol=1e-9)
    assert opt.steps == STEPS


def test_local_sgd_averages_every_period_and_steps_alone_between():
    problem, models, opt = setup(dsgd.algorithms.local_sgd(period=3))
    train(opt, models, 10)
    X = problem.x0.copy()
    for t in range(10):
        X = X - lr(t) * problem.grad(X)
        if (t + 1) % 3 == 0:
            X[:] = X.mean(0)
    np.testing.assert_allclose(xs(models), X, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("zero", ["model.zero_grad() (set_to_none)", "optimizer.zero_grad(set_to_none=False)",
                                  "no zero_grad, .grad = None by hand"])
def test_zero_grad_in_any_form_gives_the_same_run(zero):
    _, ref_models, ref = setup(dsgd.algorithms.dsgd("ring"), momentum=0.9)
    train(ref, ref_models, 12)
    _, models, opt = setup(dsgd.algorithms.dsgd("ring"), momentum=0.9)

    def by_hand():
        for m in models:
            for p in m.parameters():
                p.grad = None
    zeroing = {"model.zero_grad() (set_to_none)": lambda: [m.zero_grad() for m in models],
               "optimizer.zero_grad(set_to_none=False)": lambda: opt.zero_grad(set_to_none=False),
               "no zero_grad, .grad = None by hand": by_hand}[zero]
    train(opt, models, 12, zero=zeroing)
    assert np.array_equal(xs(models), xs(ref_models))


def test_two_accumulated_half_batches_make_one_step_of_the_full_batch():
    _, full_models, full = setup(dsgd.algorithms.gradient_tracking("ring"))
    train(full, full_models, 12)
    _, models, opt = setup(dsgd.algorithms.gradient_tracking("ring"))
    train(opt, models, 12, halves=True)
    assert opt.steps == 12
    np.testing.assert_allclose(xs(models), xs(full_models), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("algorithm", [dsgd.algorithms.dsgd("ring"), dsgd.algorithms.gradient_tracking("ring"),
                                       dsgd.algorithms.choco("ring", "qsgd:levels=4", 0.4, seed=3)],
                         ids=["dsgd with momentum", "gradient tracking", "choco with random qsgd"])
def test_resume_from_saved_state_continues_bit_for_bit(algorithm):
    _, straight_models, straight = setup(algorithm, momentum=0.9 if algorithm.name == "dsgd" else 0.0)
    train(straight, straight_models, 20)
    _, models, opt = setup(algorithm, momentum=0.9 if algorithm.name == "dsgd" else 0.0)
    train(opt, models, 10)
    saved = io.BytesIO()
    torch.save({"models": [m.state_dict() for m in models], "opt": opt.state_dict()}, saved)
    saved.seek(0)
    state = torch.load(saved, weights_only=True)
    problem, models, opt = setup(algorithm, momentum=0.9 if algorithm.name == "dsgd" else 0.0)  # a new process
    for m, s in zip(models, state["models"]):
        m.load_state_dict(s)
    opt.load_state_dict(state["opt"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.99 ** (t + 10))  # the scheduler resumes too
    train(opt, models, 10, sched=sched)
    assert opt.steps == 20
    assert np.array_equal(xs(models), xs(straight_models))


def test_the_average_model_is_swapped_in_for_evaluation_and_each_worker_gets_its_own_back():
    _, models, opt = setup(dsgd.algorithms.dsgd("ring"))
    train(opt, models, 5)
    own = xs(models)
    with opt.averaged():
        inside = xs(models)
    np.testing.assert_allclose(inside, np.broadcast_to(own.mean(0), own.shape), rtol=1e-12, atol=1e-12)
    assert np.array_equal(xs(models), own)


def test_the_bare_mixing_step_is_w_times_x():
    world = dsgd.start("self", workers_per_rank=N)
    X = torch.randn(N, 5, dtype=torch.float64)
    W = topologies.from_spec("ring", N).W(0)
    expected = W @ X.numpy()
    world.mix_([X], W)
    np.testing.assert_allclose(X.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_workers_start_from_rank_zeros_model_by_default():
    problem = lsq.Problem(N, seed=1)
    world = dsgd.start("self", workers_per_rank=N)
    models = [LeastSquares(problem, i) for i in range(N)]
    dsgd.DecentralizedOptimizer([torch.optim.SGD(m.parameters(), lr=0.1) for m in models], models,
                                dsgd.algorithms.dsgd("ring"), world)
    assert np.array_equal(xs(models), np.broadcast_to(problem.x0[0], (N, 7)))


def test_what_the_wrapper_cannot_serve_is_refused_in_one_line():
    problem = lsq.Problem(1)
    world = dsgd.start("self")
    model = LeastSquares(problem, 0)
    with pytest.raises(ValueError, match="wrapped in DataParallel, which averages gradients itself"):
        dsgd.DecentralizedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.DataParallel(model),
                                    dsgd.algorithms.csgd(), world)
    with pytest.raises(ValueError, match="the optimizer must hold exactly the model's parameters"):
        dsgd.DecentralizedOptimizer(torch.optim.SGD([model.head], lr=0.1), model, dsgd.algorithms.csgd(), world)
    with pytest.raises(ValueError, match="this world has 1 worker\\(s\\) per rank"):
        dsgd.DecentralizedOptimizer([torch.optim.SGD(model.parameters(), lr=0.1)] * 2, [model, model],
                                    dsgd.algorithms.csgd(), world)
    opt = dsgd.DecentralizedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), model, dsgd.algorithms.csgd(),
                                      world)
    with pytest.raises(ValueError, match="add every group to the optimizer before wrapping it"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})
    with pytest.raises(topologies.TopologyError, match="ring needs n >= 3"):
        dsgd.DecentralizedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), model, dsgd.algorithms.dsgd("ring"),
                                    world)
    with pytest.raises(topologies.TopologyError, match="is not connected"):
        dsgd.algorithms.dsgd(np.eye(4)).build(4)


@pytest.mark.parametrize("call, error, message", [
    (lambda: dsgd.algorithms.local_sgd(2.5), TypeError, "local_sgd: period must be an integer >= 1, got 2.5"),
    (lambda: dsgd.algorithms.local_sgd(0), ValueError, "local_sgd: period must be >= 1, got 0"),
    (lambda: dsgd.algorithms.dsgd("ring", local_steps=0), ValueError, "dsgd: local_steps must be >= 1, got 0"),
    (lambda: dsgd.algorithms.dsgd("moebius"), topologies.TopologyError, "unknown topology 'moebius'"),
    (lambda: dsgd.algorithms.gradient_tracking("ring:k=2"), topologies.TopologyError, "unknown option 'k' for ring"),
    (lambda: dsgd.algorithms.dsgd(5), TypeError, "dsgd: a topology is a spec such as 'ring', a networkx graph"),
    (lambda: dsgd.algorithms.push_sum(np.ones((3, 3))), topologies.TopologyError, "neither doubly stochastic nor"),
    (lambda: dsgd.algorithms.choco("ring", "zip"), ValueError, "unknown codec 'zip'"),
    (lambda: dsgd.algorithms.csgd("top-k:ratio=2"), ValueError, "top-k ratio must be in (0, 1], got 2.0"),
    (lambda: dsgd.algorithms.qgm("ring", momentum=1.0), ValueError, "qgm: momentum must be in [0, 1), got 1.0"),
    (lambda: dsgd.algorithms.qsr(0, 0.1), ValueError, "qsr: period must be >= 1, got 0"),
    (lambda: dsgd.algorithms.postlocal([4.5], [1, 2]), TypeError, "postlocal: a switch step must be an integer"),
    (lambda: dsgd.algorithms.diloco(period=0), ValueError, "diloco: period must be >= 1, got 0"),
    (lambda: dsgd.algorithms.diloco(period=4, outer_lr=-1), ValueError, "the outer learning rate must be > 0, got -1"),
    (lambda: dsgd.algorithms.streaming_diloco(period=4, fragments=0), ValueError,
     "streaming_diloco: fragments must be >= 1, got 0"),
    (lambda: dsgd.PartitionSampler([0, 1, 2], 0, 0), ValueError, "n_workers must be an integer >= 1, got 0"),
    (lambda: dsgd.start("self", workers_per_rank=2.5), TypeError, "workers_per_rank must be an integer >= 1, got 2.5"),
    (lambda: dsgd.start("self", workers_per_rank=0), ValueError, "workers_per_rank must be >= 1, got 0"),
])
def test_a_setting_no_job_could_use_is_refused_at_the_call_that_gives_it(call, error, message):
    """Before the number of workers is known: the line that made the mistake is the one in the traceback."""
    with pytest.raises(error) as refused:
        call()
    assert message in str(refused.value)


def test_arguments_in_the_wrong_places_are_named_and_a_state_of_another_rule_is_refused():
    problem = lsq.Problem(1)
    world = dsgd.start("self")
    model = LeastSquares(problem, 0)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="algorithm must be one of dsgd.algorithms' .* got str 'dsgd'"):
        dsgd.DecentralizedOptimizer(sgd, model, "dsgd", world)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module .* got NoneType"):
        dsgd.DecentralizedOptimizer(sgd, None, dsgd.algorithms.csgd(), world)
    with pytest.raises(TypeError, match="optimizer must be a torch optimizer .* got Linear"):
        dsgd.DecentralizedOptimizer(torch.nn.Linear(1, 1), model, dsgd.algorithms.csgd(), world)
    with pytest.raises(TypeError, match="world must be what dsgd.start\\(\\) returns, got int"):
        dsgd.DecentralizedOptimizer(sgd, model, dsgd.algorithms.csgd(), 4)
    tracking = dsgd.DecentralizedOptimizer(sgd, model, dsgd.algorithms.gradient_tracking("complete"), world)
    other = LeastSquares(problem, 0)
    choco = dsgd.DecentralizedOptimizer(torch.optim.SGD(other.parameters(), lr=0.2), other,
                                        dsgd.algorithms.choco("complete", "sign"), world)
    with pytest.raises(ValueError, match="the state was saved by a GradientTracking rule; this optimizer runs Choco"):
        choco.load_state_dict(tracking.state_dict())
    state = tracking.state_dict()
    del state["rule_type"]  # a state saved before the rule's type was recorded: the rule names what is missing
    before = choco.state_dict()
    with pytest.raises(ValueError, match="not a Choco state: it lacks"):
        choco.load_state_dict(state)
    after = choco.state_dict()  # nothing was loaded: its own learning rate (0.2, not 0.1) and copies as they were
    assert after["optimizers"] == before["optimizers"] and after["optimizers"][0]["param_groups"][0]["lr"] == 0.2
    assert all(torch.equal(a, b) for a, b in zip(after["rule"]["buffers"]["x_hat"], before["rule"]["buffers"]["x_hat"]))


def _ring_run(compile_when: str | None) -> torch.Tensor:
    """Six steps of D-SGD with momentum on a ring of 4 small networks; the forward passes through
    torch.compile (the aot_eager backend: the same kernels, traced) made before or after wrapping."""
    world = dsgd.start("self", workers_per_rank=N)
    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)) for _ in range(N)]
    forward = models
    if compile_when == "before":
        forward = [torch.compile(m, backend="aot_eager") for m in models]
        for f in forward:
            f(torch.zeros(4, 8))  # traced while the parameters still had their own storage
    opt = dsgd.DecentralizedOptimizer([torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in models],
                                      forward, dsgd.algorithms.dsgd("ring"), world, broadcast=False)
    if compile_when == "after":
        forward = [torch.compile(m, backend="aot_eager") for m in models]
    g = torch.Generator().manual_seed(1)
    for _ in range(6):
        opt.zero_grad()
        for f in forward:
            f(torch.randn(4, 8, generator=g)).pow(2).mean().backward()
        opt.step()
    return torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in models])


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_torch_compiled_model_trains_as_the_plain_one(when):
    """A compiled module is accepted (its own module is bound) and compiling after wrapping works too:
    the compiled code reads the parameters as inputs, so it sees every mix."""
    assert torch.equal(_ring_run(when), _ring_run(None))


def qsr_oracle(problem, base, alpha, steps):
    """Local SGD whose round starting at t lasts max(base, floor((alpha / lr_t)^2)) steps (Gu et al. 2024)."""
    X, start, H = problem.x0.copy(), 0, None
    for t in range(steps):
        if H is None or t == start + H:
            start, H = t, max(base, int(np.floor((alpha / lr(t)) ** 2 * (1 + 1e-9))))
        X = X - lr(t) * problem.grad(X)
        if t == start + H - 1:
            X[:] = X.mean(0)
    return X


def test_qsr_lengthens_its_rounds_as_the_scheduler_lowers_the_learning_rate():
    problem, models, opt = setup(dsgd.algorithms.qsr(period=2, alpha=0.12))
    train(opt, models, 40)
    np.testing.assert_allclose(xs(models), qsr_oracle(problem, 2, 0.12, 40), rtol=1e-9, atol=1e-9)
    starts = opt.rule.schedule.state_dict()["round_starts"]
    assert np.diff(starts)[0] < np.diff(starts)[-2]  # rounds grew (5 steps at lr 0.05, 7 by step 30)


def test_qsr_resumes_with_the_rounds_it_had_decided():
    straight_problem, straight_models, straight = setup(dsgd.algorithms.qsr(period=2, alpha=0.12))
    train(straight, straight_models, 40)
    _, models, opt = setup(dsgd.algorithms.qsr(period=2, alpha=0.12))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.99 ** t)
    train(opt, models, 17, sched=sched)  # stopped inside a round
    saved = {"models": [m.state_dict() for m in models], "opt": opt.state_dict(), "sched": sched.state_dict()}
    _, models, opt = setup(dsgd.algorithms.qsr(period=2, alpha=0.12))  # a new process, as PyTorch resumes:
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.99 ** t)  # the scheduler made, then both loaded
    for m, s in zip(models, saved["models"]):
        m.load_state_dict(s)
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    train(opt, models, 23, sched=sched)
    assert np.array_equal(xs(models), xs(straight_models))


def test_postlocal_averages_gradients_then_parameters_every_period():
    problem = lsq.Problem(N, seed=1)
    world = dsgd.start("self", workers_per_rank=N)
    models = [LeastSquares(problem, i) for i in range(N)]
    opt = dsgd.DecentralizedOptimizer([torch.optim.SGD(m.parameters(), lr=LR0) for m in models], models,
                                      dsgd.algorithms.postlocal(switch_steps=[10], periods=[1, 3]), world)
    train(opt, models, 25)
    X = np.broadcast_to(problem.x0[0], problem.x0.shape).copy()  # broadcast: every worker starts at worker 0's
    for t in range(25):
        G = problem.grad(X)
        if t < 10:
            X = X - lr(t) * G.mean(0)  # C-SGD: the averaged gradient
        else:
            X = X - lr(t) * G
            if (t - 10 + 1) % 3 == 0:
                X[:] = X.mean(0)
    np.testing.assert_allclose(xs(models), X, rtol=1e-9, atol=1e-9)


def test_the_command_line_and_the_users_own_loop_on_the_library_end_bit_for_bit_alike(tmp_path):
    """`python -m dsgd.train` (4 workers of D-SGD on a ring, momentum, weight decay) and the same run
    written as a user's loop on the library, with the command line's model, batches and learning
    rate at each step: the same parameters, bit for bit."""
    import torch.nn.functional as F

    from dsgd.config import parse
    from dsgd.data import load_dataset, local_batch, make_sampler
    from dsgd.models import build_model
    from dsgd.train import build
    from trainer import TINY, train_here, worker_params
    flags = [*TINY, "--algorithm", "dsgd", "--topology", "ring", "--weight-decay", "1e-3", "--milestones", "0.5",
             "--steps-per-epoch", "8", "--eval-every", "8", "--vectorize", "off"]
    train_here(N, tmp_path / "cli", *flags)

    from trainer import FAST
    cfg, _ = parse([*FAST, *flags, "--workers-per-rank", str(N), "--out", str(tmp_path / "unused")])
    data = load_dataset("fashion-mnist", train=True)
    plan = build.plan(cfg, 1, len(data))
    lr = build.lr_schedule(cfg, plan)  # the command line's schedule: a decay at half the run
    sampler = make_sampler(False, len(data), N, cfg.run.batch_size, cfg.run.seed, plan.steps_per_epoch)
    torch.manual_seed(cfg.run.seed)
    first = build_model("mlp", 1, 10, 28, norm="none")
    models = [copy.deepcopy(first) for _ in range(N)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=cfg.optim.lr, momentum=0.9, weight_decay=1e-3, foreach=True)
                  for m in models]
    opt = dsgd.DecentralizedOptimizer(optimizers, models, dsgd.algorithms.dsgd("ring"),
                                      dsgd.start("self", workers_per_rank=N))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the in-process command line ran
    try:
        for t in range(plan.total_steps):
            for group in opt.param_groups:
                group["lr"] = lr(t)
            opt.zero_grad()
            for k, m in enumerate(models):
                x, y = local_batch(data, sampler, k, t, cfg.run.seed)
                F.cross_entropy(m(x), y).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    mine = torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in models])
    assert torch.equal(mine, worker_params(tmp_path / "cli").reshape(N, -1))
    # one byte counter: the library's stats are the command line's metrics
    from trainer import metrics
    assert opt.stats["bytes_sent"] == metrics(tmp_path / "cli")[-1]["bytes_sent"] > 0


def test_mixed_momentum_is_w_times_every_workers_momentum_and_stays_the_optimizers_own():
    """mix_optimizer_state=True: after each SGD step the parameters and the momentum buffers are both
    mixed with the ring's W (dense numpy reference); the buffers dsgd mixes are the optimizers' own
    state, also after the optimizers load a state_dict (which replaces their tensors)."""
    import topologies
    W = topologies.from_spec("ring", N).W(0)

    def nets():
        torch.manual_seed(3)
        return [torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2)) for _ in range(N)]

    def flat(tensors):
        return np.stack([torch.cat([t.detach().reshape(-1) for t in ts]).double().numpy() for ts in tensors])

    def grads(models, t):
        g = torch.Generator().manual_seed(100 + t)
        for m in models:
            m(torch.randn(6, 5, generator=g)).pow(2).mean().backward()

    mine = nets()
    opt = dsgd.DecentralizedOptimizer([torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in mine], mine,
                                      dsgd.algorithms.dsgd(W), dsgd.start("self", workers_per_rank=N),
                                      broadcast=False, mix_optimizer_state=True)
    ref = nets()
    ref_opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in ref]
    for t in range(4):
        if t == 2:  # a reload replaces the optimizers' state tensors: dsgd binds the new ones
            for o in opt.optimizers:
                o.load_state_dict(copy.deepcopy(o.state_dict()))
        opt.zero_grad()
        grads(mine, t)
        opt.step()
        for o in ref_opts:
            o.zero_grad()
        grads(ref, t)
        for o in ref_opts:
            o.step()
        with torch.no_grad():  # x <- W x and m <- W m, worker by worker, in float64
            for tensors in ([list(m.parameters()) for m in ref],
                            [[o.state[p]["momentum_buffer"] for p in m.parameters()] for m, o in zip(ref, ref_opts)]):
                mixed = W @ flat(tensors)
                for k, ts in enumerate(tensors):
                    torch.nn.utils.vector_to_parameters(torch.from_numpy(mixed[k]).float(), ts)
    momentum = [[o.state[p]["momentum_buffer"] for p in m.parameters()] for m, o in zip(mine, opt.optimizers)]
    ref_momentum = [[o.state[p]["momentum_buffer"] for p in m.parameters()] for m, o in zip(ref, ref_opts)]
    np.testing.assert_allclose(flat([list(m.parameters()) for m in mine]), flat([list(m.parameters()) for m in ref]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flat(momentum), flat(ref_momentum), rtol=1e-5, atol=1e-6)
    bufs = opt.workers.packed_state()
    assert momentum[1][0].data_ptr() == opt.workers._state_layout.view(bufs, 1, 0).data_ptr()


# -- outer optimizers: the identities that tie them to the rules they generalize -------------------------
def _trained(algorithm, steps=STEPS, same_start=False):
    problem = lsq.Problem(N, seed=1)
    if same_start:  # every worker from worker 0's point, as a broadcast start gives
        problem.x0[:] = problem.x0[0]
    problem, models, opt = setup(algorithm, problem=problem)
    train(opt, models, steps)
    return xs(models)


def test_diloco_with_plain_outer_sgd_at_lr_one_is_local_sgd():
    """From a common start every anchor is the same, and x_a - 1 * mean(x_a - x_j) = mean(x_j): the
    outer step lands on the average (to round-off)."""
    diloco = _trained(dsgd.algorithms.diloco(period=5, outer="sgd", outer_lr=1.0, outer_momentum=0), same_start=True)
    np.testing.assert_allclose(diloco, _trained(dsgd.algorithms.local_sgd(5), same_start=True), rtol=1e-12, atol=1e-12)


def test_streaming_diloco_with_one_fragment_no_delay_and_alpha_one_is_diloco_bit_for_bit():
    for topology_spec in (None, "ring"):
        assert np.array_equal(
            _trained(dsgd.algorithms.streaming_diloco(period=5, fragments=1, delay=0, alpha=1.0,
                                                      topology_spec=topology_spec)),
            _trained(dsgd.algorithms.diloco(period=5, topology_spec=topology_spec)))


def test_sparta_with_every_coordinate_is_dsgd_after_each_step_bit_for_bit():
    assert np.array_equal(_trained(dsgd.algorithms.sparta(1.0, topology_spec="ring")),
                          _trained(dsgd.algorithms.dsgd("ring")))


def test_slowmo_is_diloco_with_momentum_sgd_outside():
    """SlowMo (Wang et al. 2020) over local SGD: the slow momentum u <- beta u + (x_a - mean x) / gamma and
    x_a <- x_a - alpha gamma u, i.e. torch's momentum SGD on the pseudo-gradient with lr alpha (gamma folded
    in), numpy reference written from that recursion."""
    problem = lsq.Problem(N, seed=1)
    problem.x0[:] = problem.x0[0]
    X, A, u = problem.x0.copy(), problem.x0.copy(), np.zeros_like(problem.x0)
    for t in range(STEPS):
        X = X - lr(t) * problem.grad(X)
        if (t + 1) % 5 == 0:
            u = 0.6 * u + (A - X).mean(0, keepdims=True)
            A = A - 1.2 * u
            X = A.copy()
    np.testing.assert_allclose(_trained(dsgd.algorithms.diloco(period=5, outer="sgd", outer_lr=1.2, outer_momentum=0.6),
                                        same_start=True), X, rtol=1e-9, atol=1e-9)


def test_streaming_sends_a_fragment_at_a_time():
    """Peak bytes per step: with F fragments, a step moves about 1/F of what DiLoCo's sync step moves."""
    peaks = {}
    for name, algorithm in (("diloco", dsgd.algorithms.diloco(period=4)),
                            ("streaming", dsgd.algorithms.streaming_diloco(period=4, fragments=2, delay=1))):
        _, models, opt = setup(algorithm)
        sent = []
        for _ in range(12):
            before = opt.stats["bytes_sent"]
            train(opt, models, 1)
            sent.append(opt.stats["bytes_sent"] - before)
        peaks[name] = max(sent)
    assert peaks["streaming"] == 4 * 8 and peaks["diloco"] == 7 * 8  # the 4-entry tensor alone; all 7 entries


def test_outer_settings_without_meaning_are_refused_in_one_line():
    with pytest.raises(ValueError, match="outer optimizer must be nesterov, sgd or adam"):
        dsgd.algorithms.diloco(period=4, outer="lion")
    with pytest.raises(ValueError, match="delay tau=4 must be in"):
        dsgd.algorithms.streaming_diloco(period=4, delay=4)
    with pytest.raises(ValueError, match="fraction must be in"):
        dsgd.algorithms.sparta(0.0)
    with pytest.raises(ValueError, match="PowerSGD compresses C-SGD's gradients"):
        dsgd.algorithms.diloco(period=4, compress="powersgd:rank=1")

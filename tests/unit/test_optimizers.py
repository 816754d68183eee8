"""dsgd.optimizers: torch.optim's SGD, Adam and AdamW steps, state and state_dict, bit for bit,
without importing torch._dynamo.

torch.optim's own classes are the reference: both sides start from the same parameters, get the
same gradients (some parameters none, one every other step) and the same learning rates (changed
between steps), over two parameter groups (the second without weight decay)."""
import io
import subprocess
import sys
import textwrap

import pytest
import torch

from dsgd import optimizers
from dsgd.elastic.snapshot import _held_optimizers

STEPS = 7

SETTINGS = {
    "sgd": (optimizers.SGD, torch.optim.SGD, {"lr": 0.1, "weight_decay": 1e-3}),
    "sgd momentum": (optimizers.SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}),
    "sgd nesterov": (optimizers.SGD, torch.optim.SGD,
                     {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3, "foreach": True}),
    "sgd dampened": (optimizers.SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.5, "dampening": 0.3}),
    "sgd foreach": (optimizers.SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "foreach": True}),
    "adam": (optimizers.Adam, torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.999), "weight_decay": 1e-3}),
    "adamw": (optimizers.AdamW, torch.optim.AdamW, {"lr": 0.01, "betas": (0.9, 0.95), "eps": 1e-6}),
    "adamw foreach": (optimizers.AdamW, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.05, "foreach": True}),
}


def parameters(seed: int = 0) -> list:
    """A weight, a bias, a parameter that never gets a gradient and one that gets it every other step."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 5), (6,), (3,), (4, 2)]
    return [torch.nn.Parameter(torch.randn(*s, generator=g)) for s in shapes]


def groups(params: list) -> list:
    return [{"params": [params[0], params[2], params[3]]}, {"params": [params[1]], "weight_decay": 0.0}]


def built(cls, settings: dict, params: list):
    return cls(groups(params), **settings)


def gradients(step: int, params: list) -> list:
    g = torch.Generator().manual_seed(1000 + step)
    grads = [torch.randn(p.shape, generator=g) for p in params]
    grads[2] = None
    if step % 2:
        grads[3] = None
    return grads


def take_steps(opt, params: list, steps: range) -> None:
    for t in steps:
        for p, grad in zip(params, gradients(t, params)):
            p.grad = grad
        for i, group in enumerate(opt.param_groups):
            group["lr"] = group["lr"] * 0.9 + 0.001 * i   # a schedule changes it between steps
        opt.step()


def assert_same(mine, theirs, where="") -> None:
    """Same structure, keys, types and values; tensors bit for bit, with the same dtype and device."""
    assert type(mine) is type(theirs) or (isinstance(mine, dict) and isinstance(theirs, dict)), where
    if isinstance(theirs, torch.Tensor):
        assert (mine.dtype, mine.device, mine.shape) == (theirs.dtype, theirs.device, theirs.shape), where
        assert torch.equal(mine, theirs), where
    elif isinstance(theirs, dict):
        assert list(mine) == list(theirs), where
        for key in theirs:
            assert_same(mine[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert len(mine) == len(theirs), where
        for i, (a, b) in enumerate(zip(mine, theirs)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert mine == theirs, where


def through_a_file(state_dict: dict) -> dict:
    """STATE_DICT as a checkpoint returns it: saved and loaded, sharing no tensor."""
    f = io.BytesIO()
    torch.save(state_dict, f)
    return torch.load(io.BytesIO(f.getvalue()))


def pair(name: str):
    ours, theirs, settings = SETTINGS[name]
    mine, reference = parameters(), parameters()
    return mine, built(ours, settings, mine), reference, built(theirs, settings, reference)


@pytest.mark.parametrize("name", SETTINGS)
def test_steps_and_state_are_torch_optims_bit_for_bit(name):
    mine, opt, reference, torch_opt = pair(name)
    take_steps(opt, mine, range(STEPS))
    take_steps(torch_opt, reference, range(STEPS))
    for a, b in zip(mine, reference):
        assert torch.equal(a, b)
    assert not torch.equal(mine[0], parameters()[0])   # it stepped
    assert torch.equal(mine[2], parameters()[2])       # no gradient, no step
    assert [p in opt.state for p in mine] == [q in torch_opt.state for q in reference]
    for p, q in zip(mine, reference):
        assert_same(opt.state.get(p), torch_opt.state.get(q), f"state of a {tuple(p.shape)} parameter")
    assert_same(opt.param_groups[1]["lr"], torch_opt.param_groups[1]["lr"])
    assert_same(opt.defaults, torch_opt.defaults)


@pytest.mark.parametrize("name", SETTINGS)
def test_the_state_dict_is_torch_optims(name):
    mine, opt, reference, torch_opt = pair(name)
    assert_same(opt.state_dict(), torch_opt.state_dict())   # before any step: no state, the settings
    take_steps(opt, mine, range(STEPS))
    take_steps(torch_opt, reference, range(STEPS))
    assert_same(opt.state_dict(), torch_opt.state_dict())


@pytest.mark.parametrize("name", SETTINGS)
def test_each_loads_the_others_state_dict_and_the_steps_go_on_alike(name):
    ours, theirs, settings = SETTINGS[name]
    mine, opt, reference, torch_opt = pair(name)
    take_steps(opt, mine, range(3))
    take_steps(torch_opt, reference, range(3))
    # swap: a checkpoint of torch's optimizer continues in ours, and ours in torch's
    mine_after, reference_after = [p.detach().clone().requires_grad_() for p in reference], \
        [p.detach().clone().requires_grad_() for p in mine]
    opt_after = built(ours, settings, mine_after)
    opt_after.load_state_dict(through_a_file(torch_opt.state_dict()))
    torch_after = built(theirs, settings, reference_after)
    torch_after.load_state_dict(through_a_file(opt.state_dict()))
    assert_same(opt_after.state_dict(), torch_opt.state_dict())
    assert_same(torch_after.state_dict(), opt.state_dict())
    take_steps(opt_after, mine_after, range(3, STEPS))
    take_steps(torch_after, reference_after, range(3, STEPS))
    take_steps(torch_opt, reference, range(3, STEPS))
    for a, b, c in zip(mine_after, reference_after, reference):
        assert torch.equal(a, c) and torch.equal(b, c)
    assert_same(opt_after.state_dict(), torch_opt.state_dict())
    assert_same(torch_after.state_dict(), torch_opt.state_dict())


def test_a_loaded_state_dict_replaces_the_settings_and_adamw_stays_decoupled():
    opt = optimizers.AdamW(parameters(), lr=0.5)
    adam = torch.optim.Adam(parameters(), lr=0.25, weight_decay=0.1)
    opt.load_state_dict(adam.state_dict())
    assert opt.param_groups[0]["lr"] == 0.25 and opt.param_groups[0]["weight_decay"] == 0.1
    assert opt.param_groups[0]["decoupled_weight_decay"] is True   # as torch.optim.AdamW does


def test_a_state_dict_of_other_groups_is_refused_as_torch_refuses_it():
    mine, opt, reference, torch_opt = pair("sgd momentum")
    one_group = torch.optim.SGD(parameters(), lr=0.1).state_dict()
    for target in (opt, torch_opt):
        with pytest.raises(ValueError, match="different number of parameter groups"):
            target.load_state_dict(one_group)
    other_sizes = torch.optim.SGD([{"params": parameters()[:2]}, {"params": parameters()[2:]}], lr=0.1).state_dict()
    for target in (opt, torch_opt):
        with pytest.raises(ValueError, match="doesn't match the size"):
            target.load_state_dict(other_sizes)


def test_zero_grad_drops_or_zeroes_the_gradients():
    params = parameters()
    opt = optimizers.SGD(params, lr=0.1)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_a_parameter_in_two_groups_or_no_parameter_is_refused():
    p = parameters()[0]
    with pytest.raises(ValueError, match="more than one parameter group"):
        optimizers.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optimizers.AdamW([], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum"):
        optimizers.SGD([p], lr=0.1, nesterov=True)


def test_the_elastic_snapshot_finds_ours_and_torchs_among_a_rules_optimizers():
    class Rule:
        pass
    rule = Rule()
    ours, theirs = optimizers.SGD(parameters(), lr=0.1), torch.optim.SGD(parameters(), lr=0.1)
    rule.outer, rule.other = [[ours], [theirs]], [parameters()]
    assert _held_optimizers(rule) == [ours, theirs]


NO_DYNAMO = textwrap.dedent("""
    import sys, tempfile
    import torch
    from dsgd import optimizers
    from dsgd.comm import SelfCommunicator
    from dsgd.train.cli import main

    for make in (lambda p: optimizers.SGD(p, lr=0.1, momentum=0.9, nesterov=True, foreach=True),
                 lambda p: optimizers.AdamW(p, lr=0.01, foreach=True), lambda p: optimizers.Adam(p, lr=0.01)):
        p = torch.nn.Parameter(torch.ones(3))
        opt = make([p])
        p.grad = torch.ones(3)
        opt.step()
        opt.load_state_dict(opt.state_dict())
        opt.zero_grad()
    with tempfile.TemporaryDirectory() as out:
        flags = ["--model", "mlp", "--dataset", "fashion-mnist", "--steps-per-epoch", "2", "--epochs", "1",
                 "--eval-every", "2", "--eval-samples", "100", "--log-every", "1000"]
        assert main([*flags, "--out", out + "/sgd", "--momentum", "0.9"], comm=SelfCommunicator()) == 0
        assert main([*flags, "--out", out + "/diloco", "--optimizer", "adamw", "--algorithm", "diloco",
                     "--local-steps", "1", "--outer-optimizer", "adam"], comm=SelfCommunicator()) == 0
    print("imported torch._dynamo:", "torch._dynamo" in sys.modules)
""")


def test_the_trainers_optimizers_never_import_torch_dynamo():
    """torch.optim.Optimizer's methods import it (about 3 s of CPU per process); ours must not, nor
    a short trainer run (SGD, AdamW inside and Adam outside), checkpoints included."""
    res = subprocess.run([sys.executable, "-c", NO_DYNAMO], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "imported torch._dynamo: False" in res.stdout, res.stdout[-3000:]

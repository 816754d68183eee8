"""SGD, Adam and AdamW for the optimizers dsgd builds itself, without torch.optim.Optimizer's start-up cost.

torch.optim.Optimizer wraps add_param_group, step, zero_grad, state_dict and load_state_dict in
torch._disable_dynamo, whose first call imports torch._dynamo: about 3 s of CPU in every rank,
although nothing is compiled. These classes keep what dsgd reads of an optimizer (param_groups,
defaults, state keyed by parameter, torch.optim's state_dict format) and step with torch's own
functional kernels (torch.optim.sgd.sgd, torch.optim.adam.adam) given exactly the arguments
torch.optim.SGD, Adam and AdamW give them. So a step is bit for bit torch's, and a state_dict
written by either loads into the other (checkpoints of earlier runs too).

Offered: what the trainer and the outer optimizers use (momentum, dampening, Nesterov, weight
decay, Adam's betas and eps, foreach, parameter groups). Not offered by the constructors: fused and
capturable kernels, differentiable steps, maximize, AMSGrad. The optimizers a library user brings
stay torch's.
"""
from __future__ import annotations

import copy
from collections import defaultdict
from itertools import chain
from typing import Any, Callable, Iterable, Union

import torch
from torch.optim.adam import adam
from torch.optim.sgd import sgd


class KernelOptimizer:
    """param_groups, defaults, state and state_dict as torch.optim.Optimizer has them; a subclass
    steps one group with a torch functional kernel (`_step_group`)."""

    # group settings a loaded state_dict cannot change (AdamW stays decoupled)
    forced: dict[str, Any] = {}

    def __init__(self, params: Iterable, defaults: dict[str, Any]):
        self.defaults = defaults
        self.state: defaultdict[torch.Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        for group in groups if isinstance(groups[0], dict) else [{"params": groups}]:
            self.add_param_group(group)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """GROUP (kept as the dict given, as torch.optim keeps it) with its missing settings from the defaults."""
        params = group["params"]
        group["params"] = [params] if isinstance(params, torch.Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, torch.Tensor) or not (p.is_leaf or p.retains_grad):
                raise ValueError(f"an optimizer steps leaf tensors, got {type(p).__name__}")
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        held = {p for g in self.param_groups for p in g["params"]}
        if not held.isdisjoint(group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in chain.from_iterable(g["params"] for g in self.param_groups):
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
                continue
            if p.grad.grad_fn is not None:
                p.grad.detach_()
            else:
                p.grad.requires_grad_(False)
            p.grad.zero_()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """One step of every group (torch.optim's steps also run without autograd); CLOSURE's loss, if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group, [p for p in group["params"] if p.grad is not None])
        return loss

    def _step_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        raise NotImplementedError

    # -- torch.optim's state_dict format -----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """{"state": {index: state}, "param_groups": [settings and "params": [index, ...]]}, a
        parameter's index its position over the groups in order; the tensors are the live state."""
        index: dict[int, int] = {}
        for i, p in enumerate(chain.from_iterable(g["params"] for g in self.param_groups)):
            index.setdefault(id(p), i)
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]
        state = {(index[id(p)] if isinstance(p, torch.Tensor) else p): s for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """STATE_DICT (ours or a torch optimizer's) in place of this one's state and group settings,
        as torch.optim loads it: tensors moved to their parameter's device (and floating-point dtype),
        step counts left as saved, entries of unknown indices kept as they are."""
        saved = copy.deepcopy(state_dict["param_groups"])
        if len(saved) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(s["params"]) != len(g["params"]) for s, g in zip(saved, self.param_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             "optimizer's group")
        param_of = dict(zip(chain.from_iterable(s["params"] for s in saved),
                            chain.from_iterable(g["params"] for g in self.param_groups)))
        state: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
        for key, entry in state_dict["state"].items():
            if key in param_of:
                p = param_of[key]
                state[p] = {name: _moved(value, p, name) for name, value in entry.items()}
            else:
                state[key] = entry
        for s, g in zip(saved, self.param_groups):
            s["params"] = g["params"]
            for name, default in self.defaults.items():   # a state_dict of an older torch lacks newer settings
                s.setdefault(name, default)
            s.update(self.forced)
        self.state, self.param_groups = state, saved


def _moved(value, param: torch.Tensor, name: str):
    """A loaded state value as torch.optim casts it for PARAM (a step count keeps its dtype and device)."""
    if not isinstance(value, torch.Tensor) or name == "step":
        return value
    if param.is_floating_point():
        return value.to(dtype=param.dtype, device=param.device)
    return value.to(device=param.device)


class SGD(KernelOptimizer):
    """torch.optim.SGD's step (torch.optim.sgd.sgd); state["momentum_buffer"] per parameter with momentum."""

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, foreach: bool | None = None):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov, "maximize": False,
                                  "foreach": foreach, "differentiable": False, "fused": None})

    def _step_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        momentum = group["momentum"] != 0
        buffers = [self.state[p].get("momentum_buffer") for p in params] if momentum else []
        sgd(params, [p.grad for p in params], buffers, has_sparse_grad=any(p.grad.is_sparse for p in params),
            foreach=group["foreach"], fused=group["fused"], weight_decay=group["weight_decay"],
            momentum=group["momentum"], lr=group["lr"], dampening=group["dampening"], nesterov=group["nesterov"],
            maximize=group["maximize"])
        if momentum:   # the kernel made the buffers of first steps
            for p, buffer in zip(params, buffers):
                self.state[p]["momentum_buffer"] = buffer


class Adam(KernelOptimizer):
    """torch.optim.Adam's step (torch.optim.adam.adam); state "step" (a float scalar tensor on the
    CPU, as torch keeps it), "exp_avg" and "exp_avg_sq" per parameter."""

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, *, foreach: bool | None = None,
                 decoupled_weight_decay: bool = False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "amsgrad": False, "maximize": False, "foreach": foreach, "capturable": False,
                                  "differentiable": False, "fused": None,
                                  "decoupled_weight_decay": decoupled_weight_decay})

    def _step_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        if any(p.grad.is_sparse for p in params):
            raise RuntimeError("Adam does not support sparse gradients")
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=_step_dtype(), device="cpu")
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
                if group["amsgrad"]:   # only from a loaded torch state_dict
                    state["max_exp_avg_sq"] = torch.zeros_like(p)
        states = [self.state[p] for p in params]
        beta1, beta2 = group["betas"]
        adam(params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
             [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [], [s["step"] for s in states],
             foreach=group["foreach"], capturable=group["capturable"], differentiable=group["differentiable"],
             fused=group["fused"], has_complex=any(torch.is_complex(p) for p in params),
             decoupled_weight_decay=group["decoupled_weight_decay"], amsgrad=group["amsgrad"], beta1=beta1,
             beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
             maximize=group["maximize"])


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (default 0.01), also after loading any state."""

    forced = {"decoupled_weight_decay": True}

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, *, foreach: bool | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, foreach=foreach, decoupled_weight_decay=True)


def _step_dtype() -> torch.dtype:
    """The dtype of Adam's step count, as torch.optim picks it (float64 only under a float64 default)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


# what dsgd treats as an optimizer: these, and any torch one (a library user's)
OPTIMIZER_TYPES = (torch.optim.Optimizer, KernelOptimizer)
AnyOptimizer = Union[torch.optim.Optimizer, KernelOptimizer]

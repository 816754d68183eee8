"""Everything one step may change on this rank, copied before the step and put back if it fails.

A step that fails half way (a neighbour died during the exchange) may have moved some of this
rank's values and not others, and a rank that finished it cannot tell whether its neighbours did.
So every survivor goes back to the values before the step and redoes it on the new world: the
parameters, gradients and module buffers (flat (K, m) buckets), the optimizers' state
(momentum, Adam moments and counters), the rule's buffers and scalars, the optimizers the rule
holds itself (DiLoCo's outer optimizers), and the step count. The copies are reused from
step to step (one extra copy of the state in memory, one memcpy per step).
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List

import torch

from dsgd.optimizers import OPTIMIZER_TYPES, AnyOptimizer


def _copy_into(saved: List[torch.Tensor] | None, tensors) -> List[torch.Tensor]:
    """SAVED refilled with TENSORS' values when the shapes still match; new clones otherwise."""
    tensors = list(tensors)
    if saved is None or len(saved) != len(tensors) or any(
            s.shape != t.shape or s.dtype != t.dtype for s, t in zip(saved, tensors)):
        return [t.detach().clone() for t in tensors]
    for s, t in zip(saved, tensors):
        s.copy_(t)
    return saved


def _saved_value(value, previous):
    """VALUE copied: into PREVIOUS when it is a tensor of the same shape and dtype, else anew."""
    if not isinstance(value, torch.Tensor):
        return copy.deepcopy(value)
    if isinstance(previous, torch.Tensor) and previous.shape == value.shape and previous.dtype == value.dtype:
        return previous.copy_(value)
    return value.detach().clone()


def _optimizer_state(opt: AnyOptimizer, previous=None) -> List[Dict[str, Any]]:
    """Per parameter (in param_groups order), its state copied (into PREVIOUS's tensors where they fit)."""
    out = []
    params = [p for group in opt.param_groups for p in group["params"]]
    previous = previous if previous is not None and len(previous) == len(params) else [None] * len(params)
    for p, before in zip(params, previous):
        state = opt.state.get(p)
        before = before or {}
        out.append(None if state is None else {k: _saved_value(v, before.get(k)) for k, v in state.items()})
    return out


def _restore_optimizer_state(opt: AnyOptimizer, saved: List[Dict[str, Any]]) -> None:
    """Put SAVED back, writing into the tensors already there (the workers bind momentum into flat
    buffers, which must stay bound) and dropping state the failed step created."""
    params = [p for group in opt.param_groups for p in group["params"]]
    for p, mine in zip(params, saved):
        if mine is None:
            opt.state.pop(p, None)
            continue
        state = opt.state[p]
        for key in [k for k in state if k not in mine]:
            del state[key]
        for key, value in mine.items():
            now = state.get(key)
            if isinstance(value, torch.Tensor) and isinstance(now, torch.Tensor) and now.shape == value.shape:
                now.copy_(value)
            else:
                state[key] = value.clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)


def _held_optimizers(rule) -> List[AnyOptimizer]:
    """The optimizers RULE holds among its attributes (an outer optimizer per worker, or per worker
    and fragment), in a fixed order."""
    out: List[AnyOptimizer] = []

    def walk(value) -> None:
        if isinstance(value, OPTIMIZER_TYPES):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    for value in vars(rule).values():
        walk(value)
    return out


class Snapshot:
    """save(opt) before a step, restore(opt) after it failed; OPT is a DecentralizedOptimizer."""

    def __init__(self):
        self._flat = None
        self._rule = None
        self._optimizers: List = []
        self._scalars: Dict[str, Any] = {}
        self._steps = 0

    @torch.no_grad()
    def save(self, opt) -> None:
        w, rule = opt.workers, opt.rule
        self._flat = _copy_into(self._flat, [*w.params, *w.grads, *w.buffers])
        self._rule = _copy_into(self._rule, [b for n in rule.buffer_names for b in getattr(rule, n)])
        self._scalars = {n: copy.deepcopy(getattr(rule, n)) for n in rule.scalar_names}
        optimizers = [*opt.optimizers, *_held_optimizers(rule)]
        previous = self._optimizers if len(self._optimizers) == len(optimizers) else [None] * len(optimizers)
        self._optimizers = [_optimizer_state(o, before) for o, before in zip(optimizers, previous)]
        self._steps = opt.steps

    @torch.no_grad()
    def restore(self, opt) -> None:
        w, rule = opt.workers, opt.rule
        for t, s in zip([*w.params, *w.grads, *w.buffers], self._flat):
            t.copy_(s)
        for t, s in zip([b for n in rule.buffer_names for b in getattr(rule, n)], self._rule):
            t.copy_(s)
        for n, v in self._scalars.items():
            setattr(rule, n, copy.deepcopy(v))
        for o, saved in zip([*opt.optimizers, *_held_optimizers(rule)], self._optimizers):
            _restore_optimizer_state(o, saved)
        opt.steps = self._steps

"""What each rule's state becomes when workers are lost: a rule for the survivors, built at the new n.

Every survivor keeps its parameters, its torch optimizer (momentum, Adam moments: kept as they
are) and its BatchNorm statistics; only the rule is rebuilt, over the survivors' schedule:

- D-SGD, C-SGD, local and post-local SGD (`OptimizerRule`): no state of their own; the schedule
  is rebuilt at the new n (the same graph family, or its fallback; averages over the survivors).
- Gradient tracking: the tracker restarts as at step 0, y_i <- g_i at the next step (the gradient
  at the survivor's parameters), so the sum of trackers again equals the sum of the gradients.
- Push-sum: each weight restarts at 1 (they sum to the new n) and each numerator at the worker's
  de-biased parameters z_i, so no parameter moves.
- CHOCO: every public copy becomes the worker's parameters, x_hat_i <- x_i, and each accumulator
  s_k = W_k x_hat is recomputed over the new graph in one uncompressed exchange, so every
  neighbour agrees on every public copy.

A rule of one's own joins with `register(RuleClass, resize)`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Tuple

from dsgd.rules import Choco, GradientTracking, OptimizerRule, PushSum, Rule
from dsgd.schedules import Gossip, LocalSGD, ParallelSGD, PostLocalSGD

from .topology import rebuild

# schedule -> (the schedule at n workers, the graph it mixes over in words, why it is a fallback or None)
Resized = Tuple[object, str, Optional[str]]


def _gossip(schedule: Gossip, n: int) -> Resized:
    topo, why = rebuild(schedule.topology, n)
    return dataclasses.replace(schedule, topology=topo), topo.spec, why


def _counted(schedule, n: int) -> Resized:
    return dataclasses.replace(schedule, n_workers=n), "average", None


SCHEDULES: Dict[type, Callable[..., Resized]] = {Gossip: _gossip, ParallelSGD: _counted, LocalSGD: _counted,
                                                 PostLocalSGD: _counted}


def _optimizer_rule(rule: OptimizerRule, schedule, engine) -> Rule:
    return OptimizerRule(schedule, rule.overlap)


def _tracking(rule: GradientTracking, schedule, engine) -> Rule:
    new = GradientTracking(schedule)   # started = False: y_i <- g_i, g_prev_i <- g_i at the next step
    new.attach(engine)
    return new


def _push_sum(rule: PushSum, schedule, engine) -> Rule:
    new = PushSum(schedule)
    new.attach(engine)                 # x_i <- z_i (the parameters), w_i <- 1
    return new


def _choco(rule: Choco, schedule, engine) -> Rule:
    new = Choco(schedule, rule.codec, rule.gamma, rule.seed)
    new.attach(engine)
    for x_hat, x in zip(new.x_hat, engine.params):
        x_hat.copy_(x)
    for k, W in enumerate(new.steps):   # s_k = W_k x_hat, one exchange per matrix of the period
        s_k = new.s[k * new.buckets:(k + 1) * new.buckets]
        for s, x_hat in zip(s_k, new.x_hat):
            s.copy_(x_hat)
        engine.mix(W, s_k)
    return new


RULES: Dict[type, Callable[..., Rule]] = {OptimizerRule: _optimizer_rule, GradientTracking: _tracking,
                                          PushSum: _push_sum, Choco: _choco}


def register(rule_class: type, resize: Callable[..., Rule]) -> None:
    """Let elastic mode carry RULE_CLASS: resize(old_rule, schedule_at_new_n, engine) returns the new
    rule, attached to the engine (whose mixer already spans the survivors)."""
    RULES[rule_class] = resize


def unsupported(rule: Rule) -> Optional[str]:
    """Why elastic mode cannot carry RULE through a change of membership (one line), or None."""
    name = type(rule).__name__
    if type(rule) not in RULES:
        known = ", ".join(sorted(c.__name__ for c in RULES))
        return f"elastic mode does not know what {name}'s state becomes when workers are lost (it knows {known})"
    if type(getattr(rule, "schedule", None)) not in SCHEDULES:
        return f"elastic mode cannot rebuild {name}'s schedule {type(rule.schedule).__name__} for fewer workers"
    if getattr(rule, "overlap", False):
        return "elastic mode needs every exchange finished inside its step: use overlap=False"
    if getattr(getattr(rule.schedule, "topology", None), "name", None) == "hierarchical":
        # its group communicators are split off the world's: a revoke of the world would not reach them
        return "elastic mode does not rebuild the hierarchical topology's group communicators yet: use a flat graph"
    return None


def resize(rule: Rule, n: int, engine) -> Tuple[Rule, str, Optional[str]]:
    """(RULE for N workers attached to ENGINE, the graph it mixes over, why it is a fallback or None)."""
    schedule, graph, why = SCHEDULES[type(rule.schedule)](rule.schedule, n)
    return RULES[type(rule)](rule, schedule, engine), graph, why

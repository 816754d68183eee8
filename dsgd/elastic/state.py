"""What each rule's state becomes when workers are lost: a rule for the survivors, built at the new n.

Every survivor keeps its parameters, its torch optimizer (momentum, Adam moments: kept as they
are) and its BatchNorm statistics; only the rule is rebuilt, over the survivors' schedule. A rank
keeps its own workers, so each survivor's rows of the rule's state are its own; what happens to
them is one of three things:

- none: D-SGD, C-SGD, local, post-local SGD and QSR (`OptimizerRule`) and SPARTA have no state of
  their own; the schedule is rebuilt at the new n (the same graph family, or its fallback; averages
  over the survivors). QSR keeps the rounds it has decided, so the round in progress keeps its length.
- restart, where an invariant sums over the workers and the lost ones took their share with them:
  - gradient tracking: y_i <- g_i at the next step (the gradient at the survivor's parameters), so
    the sum of trackers again equals the sum of the gradients;
  - push-sum: each weight restarts at 1 (they sum to the new n) and each numerator at the worker's
    de-biased parameters z_i, so no parameter moves;
  - CHOCO: every public copy becomes the worker's parameters, x_hat_i <- x_i, and each accumulator
    s_k = W_k x_hat is recomputed over the new graph in one uncompressed exchange, so every
    neighbour agrees on every public copy;
  - exact diffusion and D^2: the next step is a first step, x <- mix(x - eta g, M), so the
    survivors' mean moves by -eta times their mean gradient again at every later step (the
    correction x^t - x^{t-1} + eta g^{t-1} summed to zero over the old workers only). D^2 whose
    rebuilt graph has an eigenvalue <= -1/3 mixes with exact diffusion's (I + W) / 2 instead.
- kept, where the state is each worker's own and no sum over the workers is owed:
  - quasi-global momentum: each survivor's m_hat (its momentum, as the torch optimizers' is kept);
  - DiLoCo, gossip DiLoCo, SlowMo (`OuterStep`) and streaming DiLoCo: each worker's anchor and its
    outer optimizer's state. Over the all-1/n average every worker holds the same anchor and outer
    momentum, so the survivors' agree; over a graph each worker's anchor is its own, as always, and
    the survivors' mean anchor goes on as the outer optimizer (SGD, Nesterov) on the survivors' mean
    pseudo-gradient. A streaming fragment whose exchange is in flight at the change lands at its due
    step with the value mixed over the workers before the change (elastic mode finishes every
    exchange inside the step that starts it, so that value is complete; the old exchanges left with
    the engine belong to the old communicator and are dropped);
  - error-feedback residuals (compressed C-SGD and local SGD, compressed DiLoCo, PowerSGD): each
    survivor keeps its own, the part of its own vector compression has not delivered yet (reset, it
    would be lost); a lost worker's residual is gone with the rest of its work. Local SGD's x_sync
    and PowerSGD's warm start Q (the same on every worker) are kept.

A rule of one's own joins with `register(RuleClass, resize)`.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Callable, Dict, Optional, Tuple

from dsgd.rules import (D2_EIGENVALUE_BOUND, Choco, CompressedAveraging, Diffusion, GradientTracking, OptimizerRule,
                        PowerSGDAveraging, PushSum, QuasiGlobalMomentum, Rule, smallest_eigenvalue)
from dsgd.rules.outer import OuterStep, Sparta, StreamingOuterStep, _StreamingSchedule
from dsgd.schedules import QSR, Gossip, LocalSGD, ParallelSGD, PostLocalSGD

from .topology import rebuild

# schedule -> (the schedule at n workers, the graph it mixes over in words, why it is a fallback or None)
Resized = Tuple[object, str, Optional[str]]


def _gossip(schedule: Gossip, n: int) -> Resized:
    topo, why = rebuild(schedule.topology, n)
    return dataclasses.replace(schedule, topology=topo), topo.spec, why


def _counted(schedule, n: int) -> Resized:
    return dataclasses.replace(schedule, n_workers=n), "average", None


def _qsr(schedule: QSR, n: int) -> Resized:
    # the rounds decided so far were decided by the learning rate at their starts: kept, not asked again
    return dataclasses.replace(schedule, n_workers=n, _round_starts=list(schedule._round_starts)), "average", None


@dataclasses.dataclass(frozen=True)
class StreamingPlan:
    """What a streaming rule's schedule becomes: its graph at the new n (None: the all-1/n average)."""

    n_workers: int
    topology: object


def _streaming(schedule: _StreamingSchedule, n: int) -> Resized:
    topology = schedule.rule.topology
    if topology is None:
        return StreamingPlan(n, None), "average", None
    topo, why = rebuild(topology, n)
    return StreamingPlan(n, topo), topo.spec, why


SCHEDULES: Dict[type, Callable[..., Resized]] = {Gossip: _gossip, ParallelSGD: _counted, LocalSGD: _counted,
                                                 PostLocalSGD: _counted, QSR: _qsr, _StreamingSchedule: _streaming}


def _kept(new: Rule, old: Rule, engine) -> Rule:
    """NEW attached to ENGINE with OLD's state (this rank's rows, shared buffers, outer optimizers)."""
    new.attach(engine)
    new.load_state_dict(copy.deepcopy(old.state_dict()))
    return new


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


def _diffusion(rule: Diffusion, schedule, engine):
    exact, why = rule.exact, None
    if not exact:   # D^2 needs every W's eigenvalues above -1/3 on the new graph too
        topo = schedule.topology
        low = min(smallest_eigenvalue(topo.W(t)) for t in range(topo.period))
        if low <= D2_EIGENVALUE_BOUND:
            exact = True
            why = (f"d2 needs W's eigenvalues above -1/3, {topo.spec} on {topo.n} workers has {low:.4f}: "
                   f"exact diffusion's (I + W) / 2 instead")
    new = Diffusion(schedule, exact)   # started = False: the next step is a first step
    new.attach(engine)
    return new, why


def _qgm(rule: QuasiGlobalMomentum, schedule, engine) -> Rule:
    return _kept(QuasiGlobalMomentum(schedule, rule.beta, rule.mu, rule.nesterov), rule, engine)


def _outer(rule: OuterStep, schedule, engine) -> Rule:
    return _kept(OuterStep(schedule, rule.make_outer, rule.codec, rule.seed), rule, engine)


def _streaming_rule(rule: StreamingOuterStep, plan: StreamingPlan, engine) -> Rule:
    new = StreamingOuterStep(plan.n_workers, rule.H, rule.F, rule.tau, rule.alpha, plan.topology, rule.make_outer)
    return _kept(new, rule, engine)   # anchors, inboxes, due steps, outer optimizers; nothing pending


def _sparta(rule: Sparta, schedule, engine) -> Rule:
    return Sparta(schedule, rule.p, rule.seed)


def _compressed(rule: CompressedAveraging, schedule, engine) -> Rule:
    return _kept(CompressedAveraging(schedule, rule.codec, rule.seed), rule, engine)


def _powersgd(rule: PowerSGDAveraging, schedule, engine) -> Rule:
    return _kept(PowerSGDAveraging(schedule, rule.rank, rule.seed), rule, engine)


RULES: Dict[type, Callable[..., Rule]] = {
    OptimizerRule: _optimizer_rule, GradientTracking: _tracking, PushSum: _push_sum, Choco: _choco,
    Diffusion: _diffusion, QuasiGlobalMomentum: _qgm, OuterStep: _outer, StreamingOuterStep: _streaming_rule,
    Sparta: _sparta, CompressedAveraging: _compressed, PowerSGDAveraging: _powersgd}


def register(rule_class: type, resize: Callable[..., Rule]) -> None:
    """Let elastic mode carry RULE_CLASS: resize(old_rule, schedule_at_new_n, engine) returns the new
    rule, attached to the engine (whose mixer already spans the survivors), or (the rule, a sentence
    for the membership line when the rule changed its own settings to fit the new n)."""
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
    topology = getattr(rule.schedule, "topology", None) or getattr(rule, "topology", None)   # streaming: the rule's
    if getattr(topology, "name", None) == "hierarchical":
        # its group communicators are split off the world's: a revoke of the world would not reach them
        return "elastic mode does not rebuild the hierarchical topology's group communicators yet: use a flat graph"
    return None


def resize(rule: Rule, n: int, engine) -> Tuple[Rule, str, Optional[str]]:
    """(RULE for N workers attached to ENGINE, the graph it mixes over, why it is a fallback or None)."""
    # exchanges the old rule left with the engine ran on the old communicator: they cannot finish
    engine.in_flight, engine.background = None, []
    schedule, graph, why = SCHEDULES[type(rule.schedule)](rule.schedule, n)
    new = RULES[type(rule)](rule, schedule, engine)
    if isinstance(new, tuple):
        new, also = new
        why = "; ".join(w for w in (why, also) if w) or None
    return new, graph, why

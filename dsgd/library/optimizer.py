"""The optimizer wrapper: the user's torch optimizer, with one step of a dsgd rule per `step()`.

It shares the wrapped optimizer's `param_groups` and `state`, so learning-rate schedulers and
anything else that reads or sets them keep working; the learning rate is read from
`param_groups` at every step (also by the rules that update by their own recursion). Steps are
counted in `step()` calls, so gradients accumulated over several backward passes make one step.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

from dsgd.rules import Rule
from dsgd.rules.engine import WorkerEngine
from dsgd.train.workers import WorkerSet

from .algorithms import Algorithm
from .world import World

STATE_FORMAT = "dsgd-optimizer-1"


def _refuse_wrapped(model: torch.nn.Module) -> None:
    """Models whose parameters another system owns cannot be bound to dsgd's buffers."""
    kind = type(model).__name__
    if kind in ("DistributedDataParallel", "FullyShardedDataParallel", "DataParallel"):
        raise ValueError(f"the model is wrapped in {kind}, which averages gradients itself: give dsgd the plain "
                         f"module (dsgd does the communication)")
    if any(type(p).__name__ == "DTensor" for p in model.parameters()):
        raise ValueError("the model has sharded (DTensor) parameters: dsgd mixes whole parameters")


def _refuse_types(models: list, optimizers: list, algorithm, world) -> None:
    """Arguments in the wrong places are named as such, not found later as a missing attribute."""
    for m in models:
        if not isinstance(m, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module (a list of them with several workers per rank), got "
                            f"{type(m).__name__}")
    for o in optimizers:
        if not isinstance(getattr(o, "param_groups", None), list):
            raise TypeError(f"optimizer must be a torch optimizer over the model's parameters (a list of them with "
                            f"several workers per rank), got {type(o).__name__}")
    if not isinstance(algorithm, (Algorithm, Rule)):
        raise TypeError(f"algorithm must be one of dsgd.algorithms' (e.g. dsgd.algorithms.dsgd(\"ring\")) or a "
                        f"dsgd.Rule, got {type(algorithm).__name__} {algorithm!r}")
    if not isinstance(world, World):
        raise TypeError(f"world must be what dsgd.start() returns, got {type(world).__name__}")


class DecentralizedOptimizer(torch.optim.Optimizer):
    """OPTIMIZER (a torch optimizer over MODEL's parameters) run as one worker of a dsgd job.

    Args:
        optimizer: the user's optimizer; with several workers per rank, one per model (a list).
        model: the module it trains; a list of modules for several workers per rank.
        algorithm: an `Algorithm` from dsgd.algorithms, or a `Rule` of one's own (built for the job's
            number of workers).
        world: from `dsgd.start()`; default: MPI, one worker per rank.
        mix_buffers: mix BatchNorm running statistics with the parameters.
        mix_optimizer_state: mix momentum / Adam moments with the parameters.
        broadcast: start every worker from rank 0's parameters and buffers.
        bucket_bytes: parameters are packed into flat buckets of about this many bytes (default
            dsgd.comm.buckets.DEFAULT_CAP_BYTES); codecs compress bucket by bucket.
        clip_grad_norm: clip each worker's gradient to this 2-norm right before its optimizer steps,
            that is after the rule mixed it (C-SGD: the averaged gradient, as DDP users clip). A clip
            in the user's loop before `step()` acts on the local gradient instead.
    """

    # torch.amp.GradScaler hands such an optimizer the scale and its local overflow flag instead of
    # skipping step() itself, so the ranks can agree on a skip (see step)
    _step_supports_amp_scaling = True

    def __init__(self, optimizer, model, algorithm: Algorithm | Rule, world: World | None = None, *,
                 mix_buffers: bool = True, mix_optimizer_state: bool = False, broadcast: bool = True,
                 bucket_bytes: int | None = None, clip_grad_norm: float | None = None):
        if world is None:
            from .world import start
            world = start()
        models = list(model) if isinstance(model, (list, tuple)) else [model]
        # a torch.compile module trains the module it wraps: bind that one's parameters (the compiled
        # code reads them as inputs, so it sees every mix)
        models = [m._orig_mod if type(m).__name__ == "OptimizedModule" else m for m in models]
        optimizers = list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
        _refuse_types(models, optimizers, algorithm, world)
        if len(models) != world.workers_per_rank or len(optimizers) != len(models):
            raise ValueError(f"this world has {world.workers_per_rank} worker(s) per rank: give that many models and "
                             f"optimizers (got {len(models)} and {len(optimizers)})")
        for m, o in zip(models, optimizers):
            _refuse_wrapped(m)
            mine = {id(p) for p in m.parameters()}
            theirs = [p for g in o.param_groups for p in g["params"]]
            if {id(p) for p in theirs} != mine or len(theirs) != len(mine):
                raise ValueError("the optimizer must hold exactly the model's parameters (one worker = one model "
                                 "and its optimizer)")
        self.world, self.models, self.optimizer = world, models, optimizers[0]
        self.optimizers = optimizers
        self._optimizer_step_pre_hooks, self._optimizer_step_post_hooks = {}, {}
        self._optimizer_state_dict_pre_hooks, self._optimizer_state_dict_post_hooks = {}, {}
        self._optimizer_load_state_dict_pre_hooks, self._optimizer_load_state_dict_post_hooks = {}, {}
        self.workers = WorkerSet.of(models, optimizers, world.first_worker, bucket_bytes=bucket_bytes)
        joining = getattr(world, "joining", None)   # a replacement: the running job's state, not a start
        if broadcast and joining is None:
            world.broadcast_([*self.workers.params, *self.workers.buffers])
        n_rule = world.n_workers if joining is None else joining["first_workers"]  # the job resizes it to n
        self.rule = algorithm.build(n_rule, lambda: self._lr(0)) if isinstance(algorithm, Algorithm) \
            else algorithm
        decay = {id(p): g.get("weight_decay", 0.0) for g in self.optimizer.param_groups for p in g["params"]}
        self.engine = WorkerEngine(world.mixer, self.workers, self._lr, mix_buffers, mix_optimizer_state,
                             weight_decay=[decay[id(p)] for p in models[0].parameters()])
        if clip_grad_norm is not None:
            if not clip_grad_norm > 0:
                raise ValueError(f"clip_grad_norm must be > 0, got {clip_grad_norm}")
            self.engine.optimizer_step = self._clipped_step(float(clip_grad_norm))
        self.rule.attach(self.engine)
        self.steps = 0
        self._elastic = None
        if getattr(world, "elastic", False):  # a lost rank: the survivors recover and redo the step (dsgd.elastic)
            from dsgd.elastic import ElasticGuard
            self._elastic = ElasticGuard(self)
        if joining is not None:   # parameters, optimizer and rule state from a neighbour, the job's step
            from dsgd.elastic import join
            join.adopt(self, joining)
            world.joining = None

    # torch.optim.Optimizer's attributes are the wrapped optimizer's (also after it loads a state_dict,
    # which replaces its lists)
    @property
    def param_groups(self) -> list:
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    @property
    def defaults(self) -> dict:
        return self.optimizer.defaults

    def _lr(self, t: int) -> float:
        return float(self.param_groups[0]["lr"])

    # -- the step ------------------------------------------------------------------------------
    def step(self, closure=None):
        """One step of the rule: the local update and whatever exchange the rule makes at this step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.engine.finish()  # a parameter exchange left in flight; background ones land when due
        self._rebind_grads()
        if self._elastic is not None:
            self._elastic.run(self._step_once)
        else:
            self._step_once()
        return loss

    def _step_once(self) -> None:
        if getattr(self, "found_inf", None) is not None and self._amp_skips():
            return
        self._share_hyperparameters()
        self.engine.adopt(self.rule.step(self.steps, self.engine))
        self.steps += 1

    @property
    def membership(self) -> list:
        """The changes of membership of an elastic world (`dsgd.elastic.MembershipChange`: step, lost
        ranks and workers, the new n and topology; `dsgd.elastic.MembershipJoin` where replacements
        joined), oldest first; empty otherwise."""
        return list(self._elastic.changes) if self._elastic is not None else []

    def _clipped_step(self, max_norm: float):
        """The engine's optimizer step, each worker's gradient first scaled to norm <= max_norm (as
        torch.nn.utils.clip_grad_norm_ scales it)."""
        workers = self.workers

        @torch.no_grad()
        def step() -> None:
            norms = torch.stack([g.double().pow(2).sum(1) for g in workers.grads]).sum(0).sqrt()  # one per worker
            for k in range(workers.K):
                scale = max_norm / (float(norms[k]) + 1e-6)
                if scale < 1:
                    for g in workers.grads:
                        g[k].mul_(scale)
            workers.optimizer_step()
        return step

    def _share_hyperparameters(self) -> None:
        """With several workers per rank, the first optimizer's settings (lr set by a scheduler...)
        are every worker's."""
        for other in self.optimizers[1:]:
            for mine, first in zip(other.param_groups, self.param_groups):
                mine.update({k: v for k, v in first.items() if k != "params"})

    @torch.no_grad()
    def _amp_skips(self) -> bool:
        """Under `scaler.step(opt)`: unscale every worker's gradient, and skip the step on every rank
        when any rank found an overflow (one rank skipping alone would leave its neighbours waiting
        in the exchange). A skipped step updates nothing, exchanges nothing and is not counted. Each
        rank's scaler still backs off on its own overflow only."""
        scale = getattr(self, "grad_scale", None)
        if scale is not None:
            inv = scale.double().reciprocal().float().item()
            for g in self.workers.grads:
                g.mul_(inv)
        found = float(self.found_inf) > 0 or not all(bool(torch.isfinite(g).all()) for g in self.workers.grads)
        return self.world.comm.allreduce_max(float(found)) > 0

    def finish(self) -> None:
        """Complete every exchange a step left in flight (dsgd with overlap=True, streaming DiLoCo)."""
        self.engine.finish_all()

    def __enter__(self) -> "DecentralizedOptimizer":
        return self

    def __exit__(self, *exc) -> None:
        self.finish()

    @torch.no_grad()
    def _rebind_grads(self) -> None:
        """Gradients must sit in dsgd's buffer: after `zero_grad(set_to_none=True)` on the model (or
        anything else that replaced `.grad`), copy them in and point `.grad` there again."""
        layout = self.workers.layout
        for k, model in enumerate(self.models):
            for i, p in enumerate(model.parameters()):
                view = layout.view(self.workers.grads, k, i)
                if p.grad is None:
                    view.zero_()
                elif p.grad.data_ptr() != view.data_ptr() or p.grad.shape != view.shape:
                    view.copy_(p.grad)
                else:
                    continue
                p.grad = view

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero every worker's gradients in place (whatever `set_to_none` says: the gradients must
        stay in the buffers the exchange reads)."""
        self._rebind_grads()
        for g in self.workers.grads:
            g.zero_()

    def add_param_group(self, param_group: dict) -> None:
        raise ValueError("add_param_group after the DecentralizedOptimizer is made would leave the new parameters "
                         "out of the exchange: add every group to the optimizer before wrapping it")

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The whole algorithm state beside the model's own state_dict: the step count, the wrapped
        optimizers' states, the rule's buffers (trackers, codec state) and the mixer's counters."""
        schedule = getattr(self.rule, "schedule", None)
        return {"format": STATE_FORMAT, "steps": self.steps, "rule_type": type(self.rule).__name__,
                "optimizers": [o.state_dict() for o in self.optimizers],
                "rule": self.rule.state_dict(), "mixer": self.world.mixer.state_dict(),
                "schedule": schedule.state_dict() if hasattr(schedule, "state_dict") else None}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a DecentralizedOptimizer state ({STATE_FORMAT})")
        mine = type(self.rule).__name__
        saved_rule = state.get("rule_type", mine)
        if saved_rule != mine:
            raise ValueError(f"the state was saved by a {saved_rule} rule; this optimizer runs {mine}")
        if len(state["optimizers"]) != len(self.optimizers):
            raise ValueError(f"the state holds {len(state['optimizers'])} worker(s) of a rank; this rank has "
                             f"{len(self.optimizers)}")
        self.rule.check_state(state["rule"])  # before anything is loaded: a refused state changes nothing
        self.finish()
        for o, saved in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(saved)
        self.rule.load_state_dict(state["rule"])
        self.world.mixer.load_state_dict(state["mixer"])
        schedule = getattr(self.rule, "schedule", None)
        if state.get("schedule") is not None and hasattr(schedule, "load_state_dict"):
            schedule.load_state_dict(state["schedule"])
        self.steps = int(state["steps"])

    # -- the average model ---------------------------------------------------------------------
    @contextlib.contextmanager
    def averaged(self) -> Iterator[None]:
        """Within the block every worker's model holds the average of all workers' parameters and
        floating-point buffers (BatchNorm statistics): evaluate x_bar; on leaving, each worker's own
        values come back."""
        self.finish()
        mine = [b.clone() for b in (*self.workers.params, *self.workers.buffers)]
        targets = [*self.workers.params, *[b for b in self.workers.buffers if b.is_floating_point()]]
        with torch.no_grad():
            for t, mean in zip(targets, self.world.mixer.average(targets)):
                t.copy_(mean.expand_as(t))
        try:
            yield
        finally:
            with torch.no_grad():
                for t, saved in zip((*self.workers.params, *self.workers.buffers), mine):
                    t.copy_(saved)

    @property
    def stats(self) -> dict:
        """What this rank's workers have sent so far, counted as the command line's metrics count it:
        `bytes_sent` per worker (the mean over this rank's workers: each worker's row to the allreduce,
        or its row times its out-degree on a sparse graph, or a codec's payload), `comm_s` the seconds
        this rank spent communicating, `steps` the mixing steps by kind."""
        mixer = self.world.mixer
        return {"bytes_sent": float(mixer.worker_bytes_sent.mean()), "comm_s": mixer.stats.comm_s,
                "steps": dict(mixer.stats.steps)}

    def __repr__(self) -> str:
        return f"DecentralizedOptimizer({type(self.rule).__name__} over {self.world.n_workers} workers, " \
               f"{self.optimizer!r})"


__all__: Sequence[str] = ["DecentralizedOptimizer"]

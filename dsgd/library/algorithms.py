"""Every algorithm dsgd has, as a recipe the optimizer wrapper turns into a rule once it knows the
number of workers. A topology is a spec ("ring", "torus:rows=4,cols=4", "exponential"...), a
networkx graph on nodes 0..n-1, a numpy mixing matrix, or a `topologies.Topology`.

    dsgd.algorithms.dsgd("ring")                 # D-SGD (gossip after each step)
    dsgd.algorithms.local_sgd(period=8)          # average every 8 steps
    dsgd.algorithms.qsr(period=2, alpha=0.02)    # rounds that lengthen as the learning rate falls
    dsgd.algorithms.gradient_tracking(nx.cycle_graph(8))
    dsgd.algorithms.diloco(period=50)            # an outer Nesterov step on the averaged pseudo-gradient
    dsgd.algorithms.diloco(period=50, topology_spec="ring")   # the same over a graph: gossip DiLoCo

A rule of one's own is a subclass of `dsgd.Rule` given directly to the wrapper.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import networkx as nx
import numpy as np

import topologies
from dsgd.compress import parse_codec
from dsgd.library.checks import whole_number
from dsgd.rules.outer import OuterStep, Sparta, StreamingOuterStep, outer_optimizer
from dsgd.rules import (D2_EIGENVALUE_BOUND, Choco, CompressedAveraging, Diffusion, GradientTracking, OptimizerRule,
                        PowerSGDAveraging, PushSum, QuasiGlobalMomentum, Rule, smallest_eigenvalue)
from dsgd.schedules import QSR, Gossip, LocalSGD, ParallelSGD, PostLocalSGD

NEVER_ENDS = 2 ** 62  # a run's length, where a schedule asks for one: the library's loop has no end


@dataclass(frozen=True)
class Algorithm:
    """A named recipe: `build(n_workers, lr)` gives the rule for a job of that many workers; LR()
    is the learning rate the wrapped optimizer holds now (QSR decides its periods from it)."""

    name: str
    make: Callable[..., Rule] = field(repr=False)
    settings: dict = field(default_factory=dict)
    reads_lr: bool = False

    def build(self, n_workers: int, lr: Callable[[], float] | None = None) -> Rule:
        if self.reads_lr:
            if lr is None:
                raise ValueError(f"{self.name} reads the learning rate: build it through DecentralizedOptimizer")
            return self.make(n_workers, lr)
        return self.make(n_workers)


def topology(spec: Any, n: int) -> topologies.Topology:
    """A spec, a networkx graph, a numpy matrix or a Topology, for N workers."""
    if isinstance(spec, topologies.Topology):
        topo = spec
    elif isinstance(spec, str):
        topo = topologies.from_spec(spec, n)
    elif isinstance(spec, nx.Graph):
        topo = topologies.from_graph(spec)
    else:
        topo = topologies.from_matrix(np.asarray(spec))
    if topo.n != n:
        raise topologies.TopologyError(f"the topology has {topo.n} workers, the job {n}")
    return topo


def _doubly(spec, n, name):
    topo = topology(spec, n)
    if topo.stochastic != "doubly":
        raise topologies.TopologyError(f"{name} needs a doubly stochastic W; {topo.name} is only column-stochastic "
                                       f"(a push graph): use push_sum")
    return topo


def _codec(compress: str):
    return parse_codec(compress)


# -- settings refused at the call that gives them, not when the job's size is known ----------------
def _fraction(what: str, value: Any) -> float:
    if not 0 <= value < 1:
        raise ValueError(f"{what} must be in [0, 1), got {value}")
    return value


def _graph(spec: Any, what: str) -> Any:
    """SPEC, once it is something that can be a topology for some number of workers: a known spec, a
    networkx graph, a Topology, or a square mixing matrix (checked stochastic and connected now)."""
    if isinstance(spec, str):
        topologies.check_spec(spec)
    elif not isinstance(spec, (topologies.Topology, nx.Graph)):
        try:
            matrix = np.asarray(spec, dtype=float)
        except (TypeError, ValueError):
            matrix = None
        if matrix is None or matrix.ndim != 2:
            raise TypeError(f"{what}: a topology is a spec such as 'ring', a networkx graph, a numpy mixing matrix or "
                            f"a topologies.Topology, got {type(spec).__name__} {spec!r}")
        topologies.from_matrix(matrix)
    return spec


def _codec_given(compress: str) -> str:
    if compress != "none":
        parse_codec(compress)
    return compress


def csgd(compress: str = "none", seed: int = 0) -> Algorithm:
    """C-SGD: gradients averaged over every worker before each step (error-feedback compressed
    with a codec other than "none"; "powersgd:rank=R" for PowerSGD)."""
    _codec_given(compress)

    def make(n):
        if compress == "none":
            return OptimizerRule(ParallelSGD(n))
        codec = _codec(compress)
        if getattr(codec, "low_rank", False):
            return PowerSGDAveraging(ParallelSGD(n), codec.rank, seed)
        return CompressedAveraging(ParallelSGD(n), codec, seed)
    return Algorithm("csgd", make, {"compress": compress})


def local_sgd(period: int, compress: str = "none", seed: int = 0) -> Algorithm:
    """Local SGD: parameters averaged every PERIOD steps (the change since the last average
    error-feedback compressed with a codec)."""
    period = whole_number("local_sgd: period", period)
    _codec_given(compress)

    def make(n):
        schedule = LocalSGD(n, period, NEVER_ENDS)
        return OptimizerRule(schedule) if compress == "none" else CompressedAveraging(schedule, _codec(compress), seed)
    return Algorithm("local", make, {"period": period, "compress": compress})


def postlocal(switch_steps: Sequence[int], periods: Sequence[int]) -> Algorithm:
    """Post-local SGD: phase k starts at switch_steps[k - 1] (the first at step 0) and averages every
    periods[k] steps (1: C-SGD, gradients averaged); every phase but the last ends with an average."""
    starts = (0, *[whole_number("postlocal: a switch step", s) for s in switch_steps])
    periods = tuple(whole_number("postlocal: a period", h) for h in periods)
    if len(periods) != len(starts):
        raise ValueError(f"post-local SGD needs one period per phase: {len(starts)} phases, {len(periods)} periods")
    PostLocalSGD(2, starts, periods, NEVER_ENDS)  # its settings are refused here, not when built
    return Algorithm("postlocal", lambda n: OptimizerRule(PostLocalSGD(n, starts, periods, NEVER_ENDS)),
                     {"switch_steps": list(starts[1:]), "periods": list(periods)})


def qsr(period: int, alpha: float, power: float = 2.0, warmup_steps: int = 0) -> Algorithm:
    """The quadratic synchronization rule: local SGD whose round starting at step t lasts
    max(period, floor((alpha / lr_t)^power)) steps, lr_t read from the optimizer at that step (any
    torch scheduler); the rounds decided so far are part of the optimizer's state_dict."""
    period = whole_number("qsr: period", period)
    warmup_steps = whole_number("qsr: warmup_steps", warmup_steps, 0)
    QSR(2, period, alpha, lambda t: 1.0, NEVER_ENDS, warmup_steps, power)  # its settings are refused here
    return Algorithm("qsr", lambda n, lr: OptimizerRule(QSR(n, period, alpha, lambda t: lr(), NEVER_ENDS,
                                                            warmup_steps, power)),
                     {"period": period, "alpha": alpha, "power": power}, reads_lr=True)


def dsgd(topology_spec: Any = "ring", local_steps: int = 1, global_every: int = 0, combine_first: bool = False,
         overlap: bool = False) -> Algorithm:
    """D-SGD: the optimizer steps, then parameters are mixed with W(t) (adapt-then-combine; combine
    first with combine_first=True); overlap=True leaves that exchange in flight until the next step."""
    _graph(topology_spec, "dsgd")
    local_steps = whole_number("dsgd: local_steps", local_steps)
    global_every = whole_number("dsgd: global_every", global_every, 0)

    def make(n):
        topo = _doubly(topology_spec, n, "dsgd")
        return OptimizerRule(Gossip(topo, local_steps, global_every, combine_first), overlap)
    return Algorithm("dsgd", make, {"topology": topology_spec, "local_steps": local_steps})


def gradient_tracking(topology_spec: Any = "ring") -> Algorithm:
    """Gradient tracking (plain SGD steps by its own recursion; the wrapped optimizer's lr is read)."""
    _graph(topology_spec, "gradient_tracking")
    return Algorithm("gradient-tracking", lambda n: GradientTracking(Gossip(_doubly(topology_spec, n, "gradient "
                                                                                                     "tracking"))),
                     {"topology": topology_spec})


def exact_diffusion(topology_spec: Any = "ring") -> Algorithm:
    """Exact diffusion: D^2's recursion mixed with (I + W) / 2."""
    _graph(topology_spec, "exact_diffusion")
    return Algorithm("exact-diffusion", lambda n: Diffusion(Gossip(_doubly(topology_spec, n, "exact diffusion")),
                                                            exact=True), {"topology": topology_spec})


def d2(topology_spec: Any = "ring") -> Algorithm:
    """D^2: needs every W's smallest eigenvalue above -1/3."""
    _graph(topology_spec, "d2")

    def make(n):
        topo = _doubly(topology_spec, n, "d2")
        low = min(smallest_eigenvalue(topo.W(t)) for t in range(topo.period))
        if low <= D2_EIGENVALUE_BOUND:
            raise topologies.TopologyError(f"d2 needs every W's eigenvalues above -1/3, but {topo.name} on {n} "
                                           f"workers has {low:.4f}: use exact_diffusion")
        return Diffusion(Gossip(topo), exact=False)
    return Algorithm("d2", make, {"topology": topology_spec})


def qgm(topology_spec: Any = "ring", momentum: float = 0.9, buffer_factor: float = 0.9,
        nesterov: bool = False) -> Algorithm:
    """Quasi-global momentum: momentum from the mixed progress (its own SGD recursion)."""
    _graph(topology_spec, "qgm")
    _fraction("qgm: momentum", momentum)
    _fraction("qgm: buffer_factor", buffer_factor)
    return Algorithm("qgm", lambda n: QuasiGlobalMomentum(Gossip(_doubly(topology_spec, n, "qgm")), momentum,
                                                          buffer_factor, nesterov),
                     {"topology": topology_spec, "momentum": momentum, "buffer_factor": buffer_factor})


def push_sum(topology_spec: Any = "directed-exponential") -> Algorithm:
    """Push-sum / SGP on a column-stochastic (push) graph, or a doubly stochastic one."""
    _graph(topology_spec, "push_sum")
    return Algorithm("sgp", lambda n: PushSum(Gossip(topology(topology_spec, n))), {"topology": topology_spec})


def choco(topology_spec: Any = "ring", compress: str = "sign", consensus_step: float = 0.5,
          seed: int = 0) -> Algorithm:
    """CHOCO-SGD: compressed gossip of x_half - x_hat with consensus step gamma."""
    if not 0 < consensus_step <= 1:
        raise ValueError(f"consensus_step must be in (0, 1], got {consensus_step}")
    _graph(topology_spec, "choco")
    _codec_given(compress)
    return Algorithm("choco", lambda n: Choco(Gossip(_doubly(topology_spec, n, "choco")), _codec(compress),
                                              consensus_step, seed),
                     {"topology": topology_spec, "compress": compress, "consensus_step": consensus_step})


def _rounds(topology_spec, n, period, name):
    """The schedule of an outer rule: the all-1/n average every PERIOD steps (topology None), or the
    graph's W(round)."""
    if topology_spec is None:
        return LocalSGD(n, period, NEVER_ENDS)
    return Gossip(_doubly(topology_spec, n, name), period)


def diloco(period: int, topology_spec: Any = None, outer: str = "nesterov", outer_lr: float = 0.7,
           outer_momentum: float = 0.9, compress: str = "none", seed: int = 0) -> Algorithm:
    """DiLoCo: PERIOD inner steps of the wrapped optimizer, then the pseudo-gradient (anchor - x) is
    averaged (topology None) or mixed over a graph (gossip DiLoCo; "random-one-peer" is the NoLoCo
    setting) and an outer optimizer steps the anchor: "nesterov" (the paper's, lr 0.7, momentum 0.9),
    "sgd" (momentum SGD: SlowMo) or "adam"; a codec compresses the pseudo-gradient with error feedback."""
    period = whole_number("diloco: period", period)
    if topology_spec is not None:
        _graph(topology_spec, "diloco")
    factory = outer_optimizer(outer, outer_lr, outer_momentum)
    codec = None if compress == "none" else _codec(compress)
    if getattr(codec, "low_rank", False):
        raise ValueError(f"compress {compress}: PowerSGD compresses C-SGD's gradients; give diloco another codec")
    return Algorithm("diloco", lambda n: OuterStep(_rounds(topology_spec, n, period, "diloco"), factory, codec, seed),
                     {"period": period, "topology": topology_spec, "outer": outer, "outer_lr": outer_lr,
                      "outer_momentum": outer_momentum, "compress": compress})


def streaming_diloco(period: int, fragments: int = 2, delay: int = 1, alpha: float = 0.5, topology_spec: Any = None,
                     outer: str = "nesterov", outer_lr: float = 0.7, outer_momentum: float = 0.9) -> Algorithm:
    """Streaming DiLoCo: the model's tensors in FRAGMENTS groups by layer that end their rounds in turn
    through the period; a fragment's exchange lands DELAY inner steps after it started, and the worker's
    fragment becomes (1 - alpha) x + alpha x_anchor (1: the new anchor, as DiLoCo)."""
    period = whole_number("streaming_diloco: period", period)
    fragments = whole_number("streaming_diloco: fragments", fragments)
    delay = whole_number("streaming_diloco: delay", delay, 0)
    if topology_spec is not None:
        _graph(topology_spec, "streaming_diloco")
    factory = outer_optimizer(outer, outer_lr, outer_momentum)

    def make(n):
        topo = None if topology_spec is None else _doubly(topology_spec, n, "streaming diloco")
        return StreamingOuterStep(n, period, fragments, delay, alpha, topo, factory)
    StreamingOuterStep(2, period, fragments, delay, alpha)  # its settings are refused here, not when built
    return Algorithm("streaming-diloco", make, {"period": period, "fragments": fragments, "delay": delay,
                                                "alpha": alpha, "topology": topology_spec})


def sparta(fraction: float, topology_spec: Any = None, seed: int = 0) -> Algorithm:
    """SPARTA: after every step a random fraction of the coordinates (the same on every worker, drawn
    from the seed, never sent) is averaged (topology None) or mixed over a graph."""
    if not 0 < fraction <= 1:
        raise ValueError(f"SPARTA's fraction must be in (0, 1], got {fraction}")
    if topology_spec is not None:
        _graph(topology_spec, "sparta")
    return Algorithm("sparta", lambda n: Sparta(_rounds(topology_spec, n, 1, "sparta"), fraction, seed),
                     {"fraction": fraction, "topology": topology_spec})


__all__ = ["Algorithm", "choco", "csgd", "d2", "diloco", "dsgd", "exact_diffusion", "gradient_tracking", "local_sgd",
           "postlocal", "push_sum", "qgm", "qsr", "sparta", "streaming_diloco", "topology"]

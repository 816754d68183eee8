"""The machine a step is priced on: nodes of ranks, a Link per class, and how ranks' compute varies."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

LinkClass = Literal["intra", "inter"]
INTRA, INTER = "intra", "inter"


def _check(name: str, value: float, *, low: float, strict: bool) -> float:
    """VALUE as a float, or ValueError naming NAME when it is not finite or not above (or at) LOW."""
    value = float(value)
    bad = not math.isfinite(value) or value < low or (strict and value == low)
    if bad:
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {relation} {low:g}, got {value:g}")
    return value


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Link:
    """One class of link: a message of m bytes costs alpha + m / beta.

    Args:
        alpha: latency, seconds (>= 0).
        beta: bandwidth, bytes per second (> 0), per direction (links are full duplex).
    """
    alpha: float
    beta: float

    def __post_init__(self):
        object.__setattr__(self, "alpha", _check("latency (s)", self.alpha, low=0.0, strict=False))
        object.__setattr__(self, "beta", _check("bandwidth (bytes/s)", self.beta, low=0.0, strict=True))

    def seconds(self, nbytes: float) -> float:
        """alpha + nbytes / beta; 0 when nothing is sent (no message, no latency)."""
        return self.alpha + nbytes / self.beta if nbytes > 0 else 0.0


@dataclass(frozen=True)
class Cluster:
    """NODES nodes of RANKS_PER_NODE ranks; rank r lives on node r // ranks_per_node (as
    `launch/dsgd-mpirun` maps them: consecutive ranks share a node).

    Args:
        nodes, ranks_per_node: the machine; size = nodes * ranks_per_node ranks.
        intra: the link between two ranks of one node (shared memory, NVLink).
        inter: the link between nodes (the NIC).
        nic_shared: True when the ranks of a node share one NIC, so the node's inter-node bytes
            (summed over its ranks) go through one `inter.beta`; False gives every rank its own NIC.
        workers_per_rank: K workers per rank (one process trains K replicas); topologies are built
            on size * K workers, and a message to a peer carries one model per slot it needs.
    """
    nodes: int
    ranks_per_node: int
    intra: Link
    inter: Link
    nic_shared: bool = True
    workers_per_rank: int = 1

    def __post_init__(self):
        object.__setattr__(self, "nodes", _count("nodes", self.nodes))
        object.__setattr__(self, "ranks_per_node", _count("ranks per node", self.ranks_per_node))
        object.__setattr__(self, "workers_per_rank", _count("workers per rank", self.workers_per_rank))

    @property
    def size(self) -> int:
        return self.nodes * self.ranks_per_node

    @property
    def n_workers(self) -> int:
        return self.size * self.workers_per_rank

    def node_of(self, rank: int) -> int:
        return rank // self.ranks_per_node

    def link_class(self, a: int, b: int) -> LinkClass:
        return INTRA if self.node_of(a) == self.node_of(b) else INTER

    def link(self, link_class: LinkClass) -> Link:
        return self.intra if link_class == INTRA else self.inter

    def classes_used(self) -> list:
        """The link classes that some pair of ranks crosses."""
        return [c for c, used in ((INTRA, self.ranks_per_node > 1), (INTER, self.nodes > 1)) if used]


@dataclass(frozen=True)
class Stragglers:
    """How a rank's compute time for one step varies around the nominal compute time c.

    Each rank, each step, independently: c * exp(sigma z - sigma^2 / 2) (z standard normal, so the
    jitter has mean 1), times SLOWDOWN with probability PROB (a straggling step). Draws come from
    numpy's default_rng(SEED); see timeline.draw_compute for their order.
    """
    sigma: float = 0.0
    prob: float = 0.0
    slowdown: float = 1.0
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "sigma", _check("straggler sigma", self.sigma, low=0.0, strict=False))
        object.__setattr__(self, "prob", _check("straggler probability", self.prob, low=0.0, strict=False))
        object.__setattr__(self, "slowdown", _check("straggler slowdown", self.slowdown, low=1.0, strict=False))
        if self.prob > 1:
            raise ValueError(f"straggler probability must be <= 1, got {self.prob:g}")

    @property
    def active(self) -> bool:
        return self.sigma > 0 or (self.prob > 0 and self.slowdown > 1)


@dataclass(frozen=True)
class SlowRank:
    """One rank slowed on purpose, as the trainer's --straggler-rank / --straggler-delay do it: RANK
    adds DELAY_S seconds to its compute every step, or with RANDOM a uniform draw from [0, 2 delay_s]
    (mean delay_s) from numpy's default_rng(SEED) (not the trainer's draws: the same law, other values).
    """
    rank: int
    delay_s: float
    random: bool = False
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.rank, bool) or int(self.rank) != self.rank or self.rank < 0:
            raise ValueError(f"slow rank must be an integer >= 0, got {self.rank!r}")
        object.__setattr__(self, "rank", int(self.rank))
        object.__setattr__(self, "delay_s", _check("straggler delay (s)", self.delay_s, low=0.0, strict=False))

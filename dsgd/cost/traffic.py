"""What each rank moves for one mixing step W(t), and what that costs on a Cluster.

The plans come from `dsgd.comm.plan.make_plan`, the code the trainer's Mixer runs, through one
function, `rank_plans`, so a faster planner can replace it in one place.

How one sparse step is priced (the rule, in full):
  * every rank posts all its sends and receives at once (Isend / Irecv then Waitall, as the Mixer
    does), so concurrent messages pay one latency alpha, and their bytes add up on a shared link;
  * links are full duplex: a rank's time on a link class is alpha + max(bytes out, bytes in) / beta;
  * intra-node bytes are the rank's own; inter-node bytes are the node's total over its ranks when
    the NIC is shared (Cluster.nic_shared), else the rank's own;
  * the two classes run side by side, so a rank's communication time is the larger of the two.
A ring on one node with one worker per rank thus costs alpha + 2 M / beta per rank (2 models out,
2 in), not alpha + M / beta.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dsgd.comm.plan import MixPlan, make_plan
from dsgd.schedules.base import mixing_step

from .cluster import INTER, INTRA, Cluster


def rank_plans(topology, t: int, size: int, workers_per_rank: int) -> list:
    """Every rank's MixPlan for step t of TOPOLOGY, as the trainer makes them: from its step object
    (`Topology.step(t)`, each rank reading its own rows), or from W(t) for anything that only has W."""
    step = mixing_step(topology, t)
    return [make_plan(step, rank, size, workers_per_rank) for rank in range(size)]


@dataclass
class RankTraffic:
    """One rank's messages for one step: bytes and message counts per link class and direction."""
    out_bytes: dict = field(default_factory=lambda: {INTRA: 0, INTER: 0})
    in_bytes: dict = field(default_factory=lambda: {INTRA: 0, INTER: 0})
    out_messages: dict = field(default_factory=lambda: {INTRA: 0, INTER: 0})
    in_messages: dict = field(default_factory=lambda: {INTRA: 0, INTER: 0})
    senders: tuple = ()  # ranks whose messages this rank waits for


def traffic(plans: list, cluster: Cluster, model_bytes: float) -> list:
    """RankTraffic of every rank for one sparse step; a message carries one model per slot it names."""
    result = []
    for rank, plan in enumerate(plans):
        mine = RankTraffic(senders=tuple(peer for peer, _ in plan.recv_from))
        for peer, slots in plan.send_to:
            c = cluster.link_class(rank, peer)
            mine.out_bytes[c] += len(slots) * model_bytes
            mine.out_messages[c] += 1
        for peer, workers in plan.recv_from:
            c = cluster.link_class(rank, peer)
            mine.in_bytes[c] += len(workers) * model_bytes
            mine.in_messages[c] += 1
        result.append(mine)
    return result


def sparse_seconds(ranks: list, cluster: Cluster) -> np.ndarray:
    """Communication seconds of every rank for one sparse step (the rule in the module docstring)."""
    node_out = np.zeros(cluster.nodes)
    node_in = np.zeros(cluster.nodes)
    for rank, mine in enumerate(ranks):
        node_out[cluster.node_of(rank)] += mine.out_bytes[INTER]
        node_in[cluster.node_of(rank)] += mine.in_bytes[INTER]
    seconds = np.zeros(len(ranks))
    for rank, mine in enumerate(ranks):
        intra = cluster.intra.seconds(max(mine.out_bytes[INTRA], mine.in_bytes[INTRA]))
        inter_bytes = max(mine.out_bytes[INTER], mine.in_bytes[INTER])
        if inter_bytes > 0 and cluster.nic_shared:
            node = cluster.node_of(rank)
            inter_bytes = max(node_out[node], node_in[node])
        seconds[rank] = max(intra, cluster.inter.seconds(inter_bytes))
    return seconds


def ring_allreduce_seconds(cluster: Cluster, model_bytes: float) -> float:
    """Seconds of a ring allreduce (reduce-scatter then allgather) of MODEL_BYTES over every rank.

    2 (p - 1) rounds, each moving one chunk of M / p bytes to the next rank of the ring, all links at
    once; a round lasts as long as the slowest link class the ring crosses:
        2 (p - 1) * max_c (alpha_c + M / (p beta_c)) = 2 (p - 1) alpha + 2 (p - 1) / p * M / beta
    for one class. Ranks are placed consecutively, so each node's NIC carries one ring link per
    direction and NIC sharing does not slow it. This is the bandwidth-optimal textbook algorithm
    (Patarasuk and Yuan 2009); MPI and NCCL may pick trees or hierarchical schemes instead, which
    cost less latency and at best the same bandwidth. One worker per rank or K: the Mixer sums a
    rank's K rows first, so one model travels.
    """
    p = cluster.size
    if p == 1:
        return 0.0
    chunk = model_bytes / p
    round_s = max(cluster.link(c).seconds(chunk) for c in cluster.classes_used())
    return 2 * (p - 1) * round_s


def allreduce_bytes_per_rank(size: int, model_bytes: float) -> float:
    """Bytes one rank sends in a ring allreduce: 2 (p - 1) chunks of M / p."""
    return 2 * (size - 1) / size * model_bytes


def plan_kind(plans: list) -> str:
    """The kind every rank agrees on (identity, average or sparse): W is the same matrix for all."""
    kinds = {plan.kind for plan in plans}
    assert len(kinds) == 1, kinds  # make_plan classifies W itself, which every rank shares
    return kinds.pop()


__all__ = ["MixPlan", "RankTraffic", "allreduce_bytes_per_rank", "plan_kind", "rank_plans",
           "ring_allreduce_seconds", "sparse_seconds", "traffic"]

"""Published speed-ups of decentralized over allreduce training, and the setups to price them on.

What a paper states (its model, cluster and network) is kept apart from what had to be assumed to
price it (compute time per step, latencies, intra-node links), and every assumption is listed in
the scenario. The published ratio compares whole trainings of the same number of steps, so it is
a ratio of step times.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .cluster import Cluster, Link
from .price import predict_step

GBIT = 1e9 / 8  # bytes per second in one gigabit per second
FP32 = 4        # bytes per parameter
RESNET50_PARAMS = 25_600_000  # ImageNet ResNet-50, about 25.6 M parameters
RESNET20_PARAMS = 270_000     # CIFAR-10 ResNet-20, about 0.27 M parameters
NVLINK = Link(alpha=5e-6, beta=50e9)       # assumed intra-node link of a GPU server
SHARED_MEMORY = Link(alpha=1e-6, beta=10e9)  # assumed intra-node link of a CPU server


@dataclass(frozen=True)
class Scenario:
    """One published comparison: ALGORITHM against C-SGD (allreduce) on CLUSTER."""
    name: str
    source: str
    claim: str
    published_speedup: float
    bound: str  # how the paper states it: "about", "at least", "up to"
    algorithm: str
    cluster: Cluster
    model_bytes: float
    compute_s: float
    assumptions: tuple = field(default=())


def _sgp(ranks_per_node: int, placement: str) -> Scenario:
    return Scenario(
        name=f"sgp-resnet50-10gbe-{placement}",
        source="Assran, Loizou, Ballas, Rabbat 2019 (Stochastic Gradient Push)",
        claim="ResNet-50 on ImageNet, 32 nodes x 8 GPUs on 10 Gb/s Ethernet, 90 epochs: SGP about 1.6 h, "
              "allreduce SGD more than 5 h",
        published_speedup=5.0 / 1.6, bound="at least",
        algorithm="dsgd:one-peer-exponential",
        cluster=Cluster(nodes=32, ranks_per_node=ranks_per_node, intra=NVLINK, inter=Link(50e-6, 10 * GBIT)),
        model_bytes=RESNET50_PARAMS * FP32, compute_s=0.1,
        assumptions=(
            "fp32 parameters (102.4 MB)",
            "compute 0.1 s per step: forward and backward of 32 images on one V100-class GPU",
            "inter-node latency 50 us (TCP over Ethernet); one NIC per node, shared by its ranks",
            "intra-node link 50 GB/s, 5 us",
            "one-peer exponential graph standing in for SGP's time-varying push graph; dsgd's D-SGD "
            "gossip moves the same bytes per step as push-sum with one peer",
            "per-node: the 8 GPUs of a node act as one worker (their own reduction not priced)"
            if ranks_per_node == 1 else "per-gpu: one rank per GPU, 8 ranks behind each node's NIC",
        ))


def _lian(network: str, inter: Link) -> Scenario:
    return Scenario(
        name=f"dpsgd-resnet20-{network}",
        source="Lian, Zhang, Zhang, Hsieh, Zhang, Liu 2017 (D-PSGD)",
        claim="D-PSGD up to 10x faster than centralized SGD on low-bandwidth or high-latency networks",
        published_speedup=10.0, bound="up to",
        algorithm="dsgd:ring",
        cluster=Cluster(nodes=16, ranks_per_node=1, intra=SHARED_MEMORY, inter=inter),
        model_bytes=RESNET20_PARAMS * FP32, compute_s=0.02,
        assumptions=(
            "the paper's figure is quoted without its model and network here, so these are assumed: "
            "ResNet-20 (0.27 M fp32 parameters, 1.08 MB), 16 workers, one per node",
            "compute 0.02 s per step (one GPU, a small CIFAR-10 batch)",
            f"network {network}: latency {inter.alpha * 1e6:g} us, bandwidth {inter.beta / GBIT:g} Gb/s",
            "centralized SGD priced as a ring allreduce (the paper's baseline may differ)",
        ))


def scenarios() -> list:
    return [
        _sgp(1, "per-node"),
        _sgp(8, "per-gpu"),
        _lian("fast-10gbit", Link(5e-6, 10 * GBIT)),
        _lian("low-bandwidth-100mbit", Link(50e-6, 0.1 * GBIT)),
        _lian("high-latency-5ms", Link(5e-3, 10 * GBIT)),
    ]


def price(scenario: Scenario) -> dict:
    """The scenario, its predicted step times and speed-up beside the published one."""
    ours = predict_step(scenario.algorithm, scenario.cluster, scenario.model_bytes, scenario.compute_s)
    allreduce = predict_step("csgd", scenario.cluster, scenario.model_bytes, scenario.compute_s)
    return {"name": scenario.name, "source": scenario.source, "claim": scenario.claim,
            "algorithm": scenario.algorithm, "ranks": scenario.cluster.size,
            "nodes": scenario.cluster.nodes, "ranks_per_node": scenario.cluster.ranks_per_node,
            "model_bytes": scenario.model_bytes, "compute_s": scenario.compute_s,
            "inter_alpha_s": scenario.cluster.inter.alpha, "inter_beta_bytes_per_s": scenario.cluster.inter.beta,
            "step_s": ours.step_s, "allreduce_step_s": allreduce.step_s,
            "predicted_speedup": allreduce.step_s / ours.step_s,
            "published_speedup": scenario.published_speedup, "published_bound": scenario.bound,
            "assumptions": list(scenario.assumptions)}

"""The mixing step and the transports under it."""
from .base import CommStats, Communicator
from .buckets import BucketLayout, bind_, bind_grads_
from .mixer import Mixer, PendingMix
from .plan import MixPlan, classify, make_plan
from .simulated import SelfCommunicator, SimulatedMixer

BACKENDS = ("mpi", "torch", "simulated")


def make_communicator(backend: str, device="cpu"):
    """A rank-level communicator: "mpi" (mpi4py), "torch" (torch.distributed), "self" (one rank).

    `device` is where this rank's training tensors live; torch.distributed picks its backend from it.
    """
    if backend == "mpi":
        from .mpi import MPICommunicator
        return MPICommunicator()
    if backend == "torch":
        from .torch_dist import TorchDistCommunicator
        return TorchDistCommunicator(device)
    if backend == "self":
        return SelfCommunicator()
    raise ValueError(f"unknown communication backend {backend!r}; choose from mpi, torch, self")


__all__ = ["BACKENDS", "BucketLayout", "CommStats", "Communicator", "MixPlan", "Mixer", "PendingMix",
           "SelfCommunicator", "SimulatedMixer", "bind_", "bind_grads_", "classify", "make_communicator",
           "make_plan"]

"""Which device a rank trains on: its local rank's GPU when there is one, else the CPU."""
from __future__ import annotations

import torch

from dsgd.local_rank import local_rank, pick_device as _pick


def pick_device(choice: str = "auto") -> torch.device:
    """cpu; or the GPU of this process's local rank (Open MPI, MPICH, Slurm, torchrun), made current."""
    if choice == "cpu":
        return torch.device("cpu")
    dev = torch.device(_pick())
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


__all__ = ["local_rank", "pick_device"]

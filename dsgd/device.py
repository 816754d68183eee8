"""Which device a rank trains on: its local rank's GPU when there is one, else the CPU."""
from __future__ import annotations

import os
import sys

import torch

LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK")


def local_rank() -> int:
    """This process's index among the ranks of its node (Open MPI, MPICH, Slurm, torchrun)."""
    for var in LOCAL_RANK_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def pick_device(choice: str = "auto") -> torch.device:
    if choice == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        dev = torch.device("cuda", local_rank() % torch.cuda.device_count())
        torch.cuda.set_device(dev)
        return dev
    if choice.startswith("cuda"):
        print("dsgd: no CUDA device visible; training on the CPU", file=sys.stderr)
    return torch.device("cpu")

"""Which rank am I on this node, and which device should I use?

Every launcher tells a process its place on the node through environment
variables, each under its own names. This module reads them without importing
torch or MPI, so it is cheap to call before either is initialised:

    mpirun -np 4 python -c "from dsgd.local_rank import local_rank; print(local_rank())"

Example:
    >>> from dsgd.local_rank import local_rank, local_size, pick_device
    >>> device = pick_device()   # "cuda:1" for local rank 1 on a GPU node, else "cpu"
"""
from __future__ import annotations

import os
import re
import sys
from typing import Mapping, Optional

# (local rank, local size) variable names, most specific launcher first. torchrun
# comes before Slurm because `srun torchrun ...` sets SLURM_LOCALID per torchrun
# agent (one per node) while LOCAL_RANK is the worker's own place on the node.
LAUNCHER_VARIABLES = (
    ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),  # Open MPI mpirun
    ("MPI_LOCALRANKID", "MPI_LOCALNRANKS"),                        # MPICH / Intel MPI (Hydra)
    ("LOCAL_RANK", "LOCAL_WORLD_SIZE"),                            # torchrun
    ("SLURM_LOCALID", None),                                       # srun; size comes from the task layout
)

_cpu_notice_given = False


def _read_int(env: Mapping[str, str], name: str) -> Optional[int]:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None
    if number < 0:
        raise ValueError(f"environment variable {name}={value!r} is negative")
    return number


def slurm_tasks_on_node(tasks_per_node: str, node_id: int) -> int:
    """Tasks on node `node_id` from Slurm's compressed layout, e.g. "2(x3),1" means 2,2,2,1.

    Args:
        tasks_per_node: the value of SLURM_STEP_TASKS_PER_NODE or SLURM_TASKS_PER_NODE.
        node_id: the node's index in the allocation (SLURM_NODEID).
    """
    counts = []
    for part in tasks_per_node.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if match is None:
            raise ValueError(f"cannot parse Slurm tasks per node {tasks_per_node!r}")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    if not 0 <= node_id < len(counts):
        raise ValueError(f"SLURM_NODEID={node_id} is outside the layout {tasks_per_node!r}")
    return counts[node_id]


def local_rank(env: Optional[Mapping[str, str]] = None) -> int:
    """This process's index among the processes of the job on the same node; 0 when not launched."""
    env = os.environ if env is None else env
    for rank_name, _ in LAUNCHER_VARIABLES:
        rank = _read_int(env, rank_name)
        if rank is not None:
            return rank
    return 0


def local_size(env: Optional[Mapping[str, str]] = None) -> int:
    """How many processes of the job run on this node; 1 when not launched."""
    env = os.environ if env is None else env
    for rank_name, size_name in LAUNCHER_VARIABLES:
        if _read_int(env, rank_name) is None:
            continue
        if size_name is not None:
            size = _read_int(env, size_name)
            return size if size is not None else 1
        # Slurm: the per-step layout when inside `srun`, else the allocation's.
        layout = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
        if layout:
            return slurm_tasks_on_node(layout, _read_int(env, "SLURM_NODEID") or 0)
        return 1
    return 1


GLOBAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "RANK", "SLURM_PROCID")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def global_rank(env: Optional[Mapping[str, str]] = None) -> int:
    """This process's rank in the whole job, read from the launcher; 0 when not launched."""
    env = os.environ if env is None else env
    for name in GLOBAL_RANK_VARIABLES:
        rank = _read_int(env, name)
        if rank is not None:
            return rank
    return 0


def pick_device(prefer: str = "auto", quiet: bool = False) -> str:
    """The torch device for this process: "cuda:{local_rank % visible GPUs}", "cuda:N", or "cpu".

    Args:
        prefer: "auto" (a GPU when there is one, else cpu with a notice on stderr from rank 0
            only), "cuda" (this local rank's GPU, or RuntimeError), "cuda:N" (that GPU, or
            RuntimeError when it is not visible) or "cpu".
        quiet: never print the cpu notice (the caller reports the device itself).

    When the launcher already gives each rank exactly one GPU (CUDA_VISIBLE_DEVICES,
    `srun --gpus-per-task=1`) there is one visible GPU and every rank gets "cuda:0".
    """
    global _cpu_notice_given
    if not isinstance(prefer, str) or not DEVICE_PATTERN.fullmatch(prefer):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {prefer!r}")
    if prefer == "cpu":
        return "cpu"
    import torch  # here, not at the top: launching and rank lookup must not need torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if prefer.startswith("cuda:"):
        index = int(prefer.split(":")[1])
        if index >= gpus:
            raise RuntimeError(f"device {prefer}: this process sees {gpus} CUDA device(s)")
        return prefer
    if gpus > 0:
        return f"cuda:{local_rank() % gpus}"
    if prefer == "cuda":
        raise RuntimeError("device cuda: no CUDA device is visible to this process")
    if not _cpu_notice_given and not quiet:
        _cpu_notice_given = True
        if global_rank() == 0:  # every rank falls back alike: the job says it once
            print("dsgd: no CUDA device visible, running on cpu", file=sys.stderr)
    return "cpu"

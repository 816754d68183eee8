"""Local rank and device of a launched process (re-exported from dsgd.local_rank for launch scripts).

    mpirun -np 4 python -c "from launch.local_rank import local_rank; print(local_rank())"
"""
from dsgd.local_rank import *  # noqa: F401,F403
from dsgd.local_rank import LAUNCHER_VARIABLES, local_rank, local_size, pick_device, slurm_tasks_on_node  # noqa: F401

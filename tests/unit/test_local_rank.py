"""dsgd.local_rank: every launcher's variables map to the same local rank, size and device."""
import subprocess
import sys
import types
from pathlib import Path

import pytest

from dsgd import local_rank as lr

ALL_VARIABLES = [
    "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS",
    "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_TASKS_PER_NODE",
    "SLURM_STEP_TASKS_PER_NODE",
]


@pytest.fixture
def clean_env(monkeypatch):
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(lr, "_cpu_notice_given", False)
    return monkeypatch


@pytest.mark.parametrize("variables, rank, size", [
    ({}, 0, 1),
    ({"OMPI_COMM_WORLD_LOCAL_RANK": "3", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}, 3, 4),
    ({"MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"}, 1, 2),
    ({"LOCAL_RANK": "5", "LOCAL_WORLD_SIZE": "8"}, 5, 8),
    ({"SLURM_LOCALID": "2", "SLURM_NODEID": "0", "SLURM_TASKS_PER_NODE": "4(x2)"}, 2, 4),
    ({"SLURM_LOCALID": "0", "SLURM_NODEID": "2", "SLURM_TASKS_PER_NODE": "2(x2),1"}, 0, 1),
    ({"SLURM_LOCALID": "1", "SLURM_NODEID": "0", "SLURM_TASKS_PER_NODE": "8",
      "SLURM_STEP_TASKS_PER_NODE": "2"}, 1, 2),
    ({"SLURM_LOCALID": "0"}, 0, 1),
    # mpirun inside a Slurm allocation: the batch script's SLURM_LOCALID=0 must not win.
    ({"SLURM_LOCALID": "0", "SLURM_TASKS_PER_NODE": "1",
      "OMPI_COMM_WORLD_LOCAL_RANK": "2", "OMPI_COMM_WORLD_LOCAL_SIZE": "3"}, 2, 3),
    # srun torchrun: one agent per node (SLURM_LOCALID=0), workers have their own LOCAL_RANK.
    ({"SLURM_LOCALID": "0", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "4"}, 3, 4),
])
def test_local_rank_and_size_per_launcher(clean_env, variables, rank, size):
    for name, value in variables.items():
        clean_env.setenv(name, value)
    assert lr.local_rank() == rank
    assert lr.local_size() == size
    assert lr.local_rank(variables) == rank  # an explicit mapping reads the same way
    assert lr.local_size(variables) == size


def test_bad_values_name_the_variable(clean_env):
    clean_env.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "two")
    with pytest.raises(ValueError, match="OMPI_COMM_WORLD_LOCAL_RANK"):
        lr.local_rank()
    with pytest.raises(ValueError, match="negative"):
        lr.local_rank({"LOCAL_RANK": "-1"})


@pytest.mark.parametrize("layout, node, tasks", [
    ("4", 0, 4), ("2(x3),1", 2, 2), ("2(x3),1", 3, 1), ("1,3(x2)", 2, 3)])
def test_slurm_layout(layout, node, tasks):
    assert lr.slurm_tasks_on_node(layout, node) == tasks


@pytest.mark.parametrize("layout, node", [("2(x2)", 2), ("two", 0)])
def test_slurm_layout_errors(layout, node):
    with pytest.raises(ValueError):
        lr.slurm_tasks_on_node(layout, node)


def fake_torch(gpus):
    cuda = types.SimpleNamespace(is_available=lambda: gpus > 0, device_count=lambda: gpus)
    return types.SimpleNamespace(cuda=cuda)


@pytest.mark.parametrize("gpus, rank, device", [(4, 0, "cuda:0"), (4, 6, "cuda:2"), (1, 3, "cuda:0")])
def test_pick_device_spreads_ranks_over_gpus(clean_env, gpus, rank, device):
    clean_env.setitem(sys.modules, "torch", fake_torch(gpus))
    clean_env.setenv("OMPI_COMM_WORLD_LOCAL_RANK", str(rank))
    assert lr.pick_device() == device
    assert lr.pick_device("cuda") == device
    assert lr.pick_device("cpu") == "cpu"


def test_pick_device_without_gpu_says_so_once(clean_env, capsys):
    clean_env.setitem(sys.modules, "torch", fake_torch(0))
    assert [lr.pick_device() for _ in range(3)] == ["cpu"] * 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cpu" in err
    with pytest.raises(RuntimeError, match="CUDA"):
        lr.pick_device("cuda")
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N"):
        lr.pick_device("tpu")


def test_pick_device_with_real_torch(clean_env):
    torch = pytest.importorskip("torch")
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert lr.pick_device() == expected


def test_module_does_not_import_torch():
    code = "import sys, dsgd.local_rank as m; m.local_rank(); print('torch' in sys.modules)"
    repo = Path(lr.__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo)
    assert out.stdout.strip() == "False"

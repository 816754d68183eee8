"""scripts/which_mpi.sh: a cluster's CUDA-aware Open MPI is used, never silently shadowed by the wheel."""
import os
import subprocess
from pathlib import Path

import pytest

from launch_helpers import REPO

SCRIPT = REPO / "scripts" / "which_mpi.sh"


def fake_mpi(root: Path, cuda: bool, venv: bool = False, layer: str = "mpi") -> Path:
    """mpicc and ompi_info; Open MPI 4 reports mpi_built_with_cuda_support, Open MPI 5 opal_built_..."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "mpicc").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "ompi_info").write_text(
        f"#!/bin/sh\necho 'mca:opal:base:param:opal_built_with_cuda_support:synonym:name:mpi_built_with_cuda_support'\n"
        f"echo 'mca:{layer}:base:param:{layer}_built_with_cuda_support:value:{str(cuda).lower()}'\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    if venv:
        (root / "pyvenv.cfg").write_text("home = /usr/bin\n")
    return bin_dir


def which(path_dirs, **env):
    full = {"PATH": os.pathsep.join([*map(str, path_dirs), "/usr/bin", "/bin"]), **env}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=full, timeout=30)


@pytest.mark.parametrize("layer", ["mpi", "opal"])
def test_a_cuda_aware_system_open_mpi_is_chosen_and_named(tmp_path, layer):
    bin_dir = fake_mpi(tmp_path / "cluster", cuda=True, layer=layer)
    res = which([bin_dir])
    assert res.returncode == 0 and res.stdout.split() == ["system", str(bin_dir / "mpicc")]
    assert "CUDA-aware Open MPI" in res.stderr and "DSGD_MPI=wheel" in res.stderr


def test_a_venv_wheel_mpi_earlier_on_path_does_not_hide_the_cluster_one(tmp_path):
    wheel = fake_mpi(tmp_path / "venv", cuda=False, venv=True)
    cluster = fake_mpi(tmp_path / "cluster", cuda=True)
    assert which([wheel, cluster]).stdout.split() == ["system", str(cluster / "mpicc")]


def test_a_system_mpi_without_cuda_gets_the_wheel_and_says_how_to_choose(tmp_path):
    res = which([fake_mpi(tmp_path / "cluster", cuda=False)])
    assert res.stdout.strip() == "wheel" and "DSGD_MPI=system" in res.stderr


@pytest.mark.parametrize("env, status, out", [({"DSGD_MPI": "wheel"}, 0, "wheel"), ({"DSGD_MPI": "mpich"}, 2, "")])
def test_explicit_choices(tmp_path, env, status, out):
    res = which([fake_mpi(tmp_path / "cluster", cuda=True)], **env)
    assert res.returncode == status and res.stdout.strip() == out


def test_asking_for_the_system_mpi_where_there_is_none_fails_in_one_line(tmp_path):
    res = which([], DSGD_MPI="system")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1

"""The container recipes and launch scripts, checked without a Docker engine.

hadolint lints both Dockerfiles; the rest checks that the images install through
scripts/install.sh (CI's install path), run as a non-root user, and that the compose
cluster, its hostfile and the shell scripts fit together.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from launch_helpers import PYTHON_BIN, REPO

DOCKERFILES = [REPO / "docker" / "Dockerfile", REPO / "docker" / "Dockerfile.cpu"]
SHELL_SCRIPTS = [REPO / "launch" / "dsgd-mpirun", REPO / "launch" / "slurm.sbatch",
                 REPO / "docker" / "entrypoint.sh", REPO / "tests" / "launch" / "netns_rsh.sh"]
EXECUTABLES = [REPO / "launch" / "dsgd-mpirun", REPO / "docker" / "entrypoint.sh",
               REPO / "tests" / "launch" / "netns_rsh.sh"]


def instructions(dockerfile: Path) -> list:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [tuple(item.split(None, 1)) for item in joined]


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(PYTHON_BIN)) or shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint not installed (it comes with the dev extra: scripts/install.sh)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    res = subprocess.run([hadolint(), str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "", res.stdout + res.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_lint_exceptions_are_few_and_explained(dockerfile):
    lines = dockerfile.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert line.strip() == "# hadolint ignore=DL3008", line   # unpinnable apt versions only
            reason = " ".join(lines[max(0, i - 3):i])
            assert lines[i - 1].startswith("#") and "version" in reason, "explain the exception above it"
    assert not (REPO / "docker" / ".hadolint.yaml").exists()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_installs_through_the_install_script(dockerfile):
    steps = instructions(dockerfile)
    names = [name for name, _ in steps]
    base = steps[0][1]
    assert steps[0][0] == "FROM" and re.search(r":\d[\w.-]*$", base), f"pin the base image: {base}"
    installs = [i for i, (name, args) in enumerate(steps) if name == "RUN" and "scripts/install.sh" in args]
    assert len(installs) == 1, "exactly one RUN goes through scripts/install.sh"
    install_args = steps[installs[0]][1]
    assert "DSGD_NO_VENV=1" in install_args and "DSGD_TORCH=" in install_args
    assert "pip install" not in " ".join(args for name, args in steps if name == "RUN"), \
        "packages are installed by scripts/install.sh, not by the Dockerfile"
    assert names.index("COPY") < installs[0]
    users = [args for name, args in steps if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image must not run as root"
    assert installs[0] < names.index("USER")
    assert any(name == "ENTRYPOINT" and "docker/entrypoint.sh" in args for name, args in steps)


def test_compose_cluster_fits_together():
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    hosts = [line.split()[0] for line in (REPO / "docker" / "hostfile.compose").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    workers = sorted(name for name, spec in services.items() if spec["command"] == ["worker"])
    assert sorted(hosts) == workers and len(workers) >= 2
    assert [name for name, spec in services.items() if spec["command"] == ["launcher"]] == ["launcher"]
    for spec in services.values():
        dockerfile = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", spec["build"]["dockerfile"])
        assert (REPO / "docker" / spec["build"]["context"] / dockerfile).resolve().is_file()
        assert any(volume.endswith(":/ssh") for volume in spec["volumes"]), "workers and launcher share keys"
        assert spec["networks"] == ["cluster"]


def test_example_hostfile_runs_on_one_machine():
    entries = [line.split("#")[0].strip() for line in (REPO / "hostfile").read_text().splitlines()]
    assert [entry for entry in entries if entry] == ["localhost slots=4"]


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse(script):
    shell = "sh" if script.read_text().startswith("#!/bin/sh") else "bash"
    res = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("script", EXECUTABLES, ids=lambda p: p.name)
def test_scripts_are_executable(script):
    assert os.access(script, os.X_OK), f"chmod +x {script.relative_to(REPO)}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_working_directory_belongs_to_the_user_the_image_runs_as(dockerfile):
    # the documented first command writes runs/ into the working directory
    steps = instructions(dockerfile)
    workdir = [args for name, args in steps if name == "WORKDIR"][-1]
    uid = [args for name, args in steps if name == "USER"][-1].split(":")[0]
    copies = [args.split() for name, args in steps if name == "COPY" and args.split()[-1] == workdir]
    assert copies, f"nothing is copied into {workdir}"
    assert all(f"--chown={uid}:{uid}" in c for c in copies), (copies, uid)


def test_gpu_compose_gives_each_rank_of_each_worker_its_own_gpu():
    gpu = yaml.safe_load((REPO / "docker" / "compose.gpu.yaml").read_text())["services"]
    base = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())["services"]
    slots = {}
    for line in (REPO / "docker" / "hostfile.compose").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            host, spec = line.split()
            slots[host] = int(spec.split("=")[1])
    assert set(gpu) == set(slots) and set(gpu) <= set(base)
    seen = []
    for worker, spec in gpu.items():
        (device,) = spec["deploy"]["resources"]["reservations"]["devices"]
        ids = device["device_ids"]
        assert len(ids) == slots[worker], f"{worker}: {slots[worker]} ranks but GPUs {ids}"
        seen += ids
    assert len(seen) == len(set(seen)), f"a GPU is given to two containers: {seen}"

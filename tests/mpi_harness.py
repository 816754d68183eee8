"""Run a program under a real `mpirun` with a hard timeout, for the multi-rank tests."""
from __future__ import annotations

import subprocess
from pathlib import Path

from dsgd import launcher

REPO = launcher.REPO
PROGRAMS = REPO / "tests" / "mpi" / "programs"


def run(np: int, args: list[str], timeout: float = 120, env: dict | None = None,
        cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m mpi4py ARGS` on NP ranks; a job still running after TIMEOUT fails the test.

    One thread per rank, whatever the cores: tests compare layouts (4 x 1 against 1 x 4) bit for bit,
    and a reduction split over another number of threads rounds differently."""
    try:
        return launcher.run(np, args, timeout=timeout, env=env, cwd=cwd or REPO, threads=1)
    except TimeoutError as e:
        raise AssertionError(str(e)) from None


def run_ok(np: int, args: list[str], timeout: float = 120, env: dict | None = None) -> str:
    """Run and require exit status 0; return the combined output."""
    res = run(np, args, timeout=timeout, env=env)
    assert res.returncode == 0, f"mpirun -np {np} failed with {res.returncode}:\n{res.stdout[-6000:]}"
    return res.stdout


def program(name: str) -> str:
    return str(PROGRAMS / name)


mpirun_env = launcher.mpirun_env
mpirun_command = launcher.mpirun_command

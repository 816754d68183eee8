"""Run a program under a real `mpirun` with a hard timeout, for the multi-rank tests.

Every rank runs under `python -m mpi4py`, so an uncaught exception on one rank calls
MPI_Abort and the whole job fails at once instead of leaving the others waiting.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = REPO / "tests" / "mpi" / "programs"


def mpirun_env(extra: dict | None = None) -> dict:
    """Environment for oversubscribed Open MPI runs on a small machine."""
    env = dict(os.environ)
    env.update({
        "OMPI_MCA_mpi_yield_when_idle": "1",     # ranks > cores: spin less while waiting
        "OMPI_MCA_rmaps_base_oversubscribe": "1",
        "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe",
        "OMP_NUM_THREADS": "1",                  # one thread per rank; ranks already share 2 cores
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    })
    if os.geteuid() == 0:
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    env.update(extra or {})
    return env


def mpirun_command(np: int, args: list[str]) -> list[str]:
    return ["mpirun", "-np", str(np), "--oversubscribe", "--bind-to", "none",
            sys.executable, "-m", "mpi4py", *args]


def run(np: int, args: list[str], timeout: float = 120, env: dict | None = None,
        cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m mpi4py ARGS` on NP ranks; kill the whole job after TIMEOUT seconds."""
    proc = subprocess.Popen(mpirun_command(np, args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=mpirun_env(env), cwd=cwd or REPO, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"mpirun -np {np} {' '.join(args)} did not finish in {timeout}s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def run_ok(np: int, args: list[str], timeout: float = 120, env: dict | None = None) -> str:
    """Run and require exit status 0; return the combined output."""
    res = run(np, args, timeout=timeout, env=env)
    assert res.returncode == 0, f"mpirun -np {np} failed with {res.returncode}:\n{res.stdout[-6000:]}"
    return res.stdout


def program(name: str) -> str:
    return str(PROGRAMS / name)

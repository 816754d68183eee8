"""Build and run an `mpirun` line for this machine (used by the demo, experiments and tests).

Ranks run under `python -m mpi4py`, so an exception on one rank aborts the whole job.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def mpirun_env(extra: dict | None = None, threads: int = 1) -> dict:
    """Environment for (possibly oversubscribed) Open MPI runs on one machine."""
    env = dict(os.environ)
    env.update({
        "OMPI_MCA_mpi_yield_when_idle": "1",     # ranks > cores: yield the core while waiting
        "OMPI_MCA_rmaps_base_oversubscribe": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    })
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    env.update(extra or {})
    return env


def mpirun_command(np: int, args: list[str], python: str | None = None) -> list[str]:
    return ["mpirun", "-np", str(np), "--oversubscribe", "--bind-to", "none",
            python or sys.executable, "-m", "mpi4py", *args]


def run(np: int, args: list[str], timeout: float | None = None, env: dict | None = None,
        capture: bool = True, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m mpi4py ARGS` on NP ranks; kill the whole job after TIMEOUT seconds."""
    out = subprocess.PIPE if capture else None
    proc = subprocess.Popen(mpirun_command(np, args), stdout=out, stderr=subprocess.STDOUT if capture else None,
                            text=True, env=mpirun_env(env), cwd=cwd, start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate()
        raise TimeoutError(f"mpirun -np {np} {' '.join(args)} did not finish in {timeout}s:\n{(stdout or '')[-4000:]}")
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, "")

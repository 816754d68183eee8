"""Build and run `mpirun` lines from the launch policy: the command line of `launch/dsgd-mpirun`,
and the Python API the demo, the experiments and the tests use.

    python -m dsgd.launcher [-np N] [--hostfile FILE] [--per-node P] [--oversubscribe]
                            [--threads T] [--bind core|none] [--mca KEY VALUE]... [--dry-run]
                            -- COMMAND [ARG...]

Both give the same line for the same request (`dsgd.launch_policy`); what a caller prints is the
argv it runs, so a printed line can be pasted into a shell as it is.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Mapping, Optional, Sequence

from dsgd.launch_policy import Machine, Request, UsageError, mpirun_line

REPO = Path(__file__).resolve().parents[1]
SYNOPSIS = textwrap.dedent(__doc__.split("\n\n")[1])


def mpirun_command(np: int, args: Sequence[str], python: Optional[str] = None, *,
                   oversubscribe: Optional[bool] = None, threads: Optional[int] = None,
                   bind: Optional[str] = None, hostfile: Optional[str] = None, per_node: Optional[int] = None,
                   mca: Sequence[tuple] = (), environ: Optional[Mapping[str, str]] = None) -> list:
    """The mpirun line that runs `PYTHON ARGS` (under mpi4py) on NP ranks.

    oversubscribe=None: only when NP exceeds this machine's cores (and no hostfile is given); the
    line shows it either way. Everything else follows the policy, as `launch/dsgd-mpirun` does.
    """
    machine = Machine.here(environ)
    if oversubscribe is None:
        oversubscribe = hostfile is None and np > machine.cores
    request = Request(command=(python or sys.executable, *args), np=np, hostfile=hostfile, per_node=per_node,
                      oversubscribe=oversubscribe, threads=threads, bind=bind, mca=tuple(mca))
    return mpirun_line(request, machine)


def mpirun_env(extra: Optional[dict] = None, threads: int = 1) -> dict:
    """Environment for an mpirun line a test writes by hand on purpose (ranks without mpi4py, say):
    root allowed, oversubscription allowed, waiting ranks yield, one thread per rank, and on this
    one host no libfabric probe (unless EXTRA or the environment chose the transports).

    Lines from `mpirun_command` need none of this: they carry it as options."""
    env = dict(os.environ)
    env.setdefault("OMPI_MCA_btl", "^ofi")
    env.update({
        "OMPI_MCA_mpi_yield_when_idle": "1",
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


def execute(line: Sequence[str], timeout: Optional[float] = None, env: Optional[dict] = None,
            capture: bool = True, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run LINE with the caller's environment (plus ENV); kill the whole job after TIMEOUT seconds."""
    out = subprocess.PIPE if capture else None
    proc = subprocess.Popen(list(line), stdout=out, stderr=subprocess.STDOUT if capture else None, text=True,
                            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate()
        raise TimeoutError(f"{shlex.join(line)} did not finish in {timeout}s:\n{(stdout or '')[-4000:]}")
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, "")


def run(np: int, args: Sequence[str], timeout: Optional[float] = None, env: Optional[dict] = None,
        capture: bool = True, cwd: str | Path | None = None, **policy) -> subprocess.CompletedProcess:
    """Run `python -m mpi4py ARGS` on NP ranks (`mpirun_command` with POLICY options); ENV is added to
    the caller's environment and forwarded like it."""
    line = mpirun_command(np, args, environ={**os.environ, **(env or {})}, **policy)
    return execute(line, timeout=timeout, env=env, capture=capture, cwd=cwd)


# -- the command line ----------------------------------------------------------------------------
def parse_cli(argv: Sequence[str]) -> tuple:
    """(Request, dry_run) from dsgd-mpirun's options; None for --help."""
    argv = list(argv)
    fields: dict = {"mca": []}
    dry_run = False
    valued = {"-np": "np", "-n": "np", "--np": "np", "--hostfile": "hostfile", "--per-node": "per_node",
              "--threads": "threads", "--bind": "bind"}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in valued:
            if i + 1 >= len(argv):
                raise UsageError(f"{word} needs a value")
            fields[valued[word]] = argv[i + 1]
            i += 2
        elif word == "--mca":
            if i + 2 >= len(argv):
                raise UsageError("--mca needs KEY VALUE")
            fields["mca"].append((argv[i + 1], argv[i + 2]))
            i += 3
        elif word == "--oversubscribe":
            fields["oversubscribe"] = True
            i += 1
        elif word == "--dry-run":
            dry_run, i = True, i + 1
        elif word in ("-h", "--help"):
            return None, False
        elif word == "--":
            i += 1
            break
        elif word.startswith("-"):
            raise UsageError(f"unknown option {word} (options go before --, the command after it)")
        else:
            break
    command = tuple(argv[i:])
    if not command:
        raise UsageError("no command given; usage: dsgd-mpirun [options] -- COMMAND [ARG...]")
    # Counts stay text here: the policy checks them and names the option in its message.
    return Request(command=command, np=fields.get("np"), hostfile=fields.get("hostfile"),
                   per_node=fields.get("per_node"), oversubscribe=fields.get("oversubscribe", False),
                   threads=fields.get("threads"), bind=fields.get("bind"), mca=tuple(fields["mca"])), dry_run


def main(argv: Optional[Sequence[str]] = None, prog: str = "python -m dsgd.launcher",
         uid: Optional[int] = None) -> int:
    """Print (--dry-run) or exec the mpirun line; usage errors are one line and status 2."""
    try:
        request, dry_run = parse_cli(sys.argv[1:] if argv is None else argv)
        if request is None:
            first, *rest = SYNOPSIS.strip().splitlines()
            print("\n".join([first.replace("python -m dsgd.launcher", prog, 1)]
                            + [" " * (len(prog) + 1) + line.strip() for line in rest]))
            print("See the header of launch/dsgd-mpirun or docs/launch.md for details.")
            return 0
        line = mpirun_line(request, Machine.here(uid=uid))
        if dry_run:
            print(shlex.join(line), flush=True)
            return 0
        if shutil.which(line[0]) is None:
            raise UsageError(f"{line[0]} not found on PATH (activate the venv, or set DSGD_MPIRUN)")
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    os.execvp(line[0], line)


if __name__ == "__main__":
    sys.exit(main())

"""Build and run `mpirun` lines from the launch policy: the command line of `launch/dsgd-mpirun`,
and the Python API the demo, the experiments and the tests use.

    python -m dsgd.launcher [-np N] [--hostfile FILE] [--per-node P] [--oversubscribe]
                            [--threads T] [--bind core|none] [--mca KEY VALUE]... [--host-timeout S]
                            [--dry-run] -- COMMAND [ARG...]

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
HOST_TIMEOUT = 30.0  # seconds each host of a hostfile has to answer before the job starts
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


# what the launcher needs to treat a job the ranks spawn as `--with-ft ulfm` treats the first (docs/elastic.md)
REPLACEMENT_MCA = ("--prtemca", "state_base_recoverable", "1", "--prtemca", "state_base_notify_errors", "1")


def fault_tolerant(line: Sequence[str], replacements: bool = False) -> list:
    """LINE (an mpirun line) with ULFM turned on, so that a lost rank leaves the others running
    (`--with-ft ulfm` right after mpirun); REPLACEMENTS: also let the ranks spawn new processes that
    survive as the first ones do (`dsgd.start(..., elastic=True, replace=True)`)."""
    return [line[0], "--with-ft", "ulfm", *(REPLACEMENT_MCA if replacements else ()), *line[1:]]


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
              "--threads": "threads", "--bind": "bind", "--host-timeout": "host_timeout"}
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
            return None, False, 0.0
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
    raw_timeout = fields.pop("host_timeout", None)
    try:
        host_timeout = HOST_TIMEOUT if raw_timeout is None else float(raw_timeout)
    except ValueError:
        host_timeout = float("nan")
    if not 0 <= host_timeout <= 3600:
        raise UsageError(f"--host-timeout must be seconds in [0, 3600], got '{raw_timeout}'")
    # Counts stay text here: the policy checks them and names the option in its message.
    return Request(command=command, np=fields.get("np"), hostfile=fields.get("hostfile"),
                   per_node=fields.get("per_node"), oversubscribe=fields.get("oversubscribe", False),
                   threads=fields.get("threads"), bind=fields.get("bind"), mca=tuple(fields["mca"])), dry_run, host_timeout


def main(argv: Optional[Sequence[str]] = None, prog: str = "python -m dsgd.launcher",
         uid: Optional[int] = None) -> int:
    """Print (--dry-run) or run the mpirun line under `supervise`; usage errors, and a host that does
    not answer, are one line and status 2."""
    try:
        request, dry_run, host_timeout = parse_cli(sys.argv[1:] if argv is None else argv)
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
        program = request.command[0]
        if not request.hostfile and shutil.which(program) is None:  # on one machine the ranks' PATH is this one
            raise UsageError(f"command not found: {program} (the program after --: a path, or a name on PATH)")
        if request.hostfile and host_timeout > 0:
            from dsgd.hosts import check_hosts
            check_hosts(request.hostfile, request.mca, os.environ, host_timeout)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    return supervise(line, prog)


def supervise(line: Sequence[str], prog: str) -> int:
    """Run mpirun as a child in its own process group and stay beside it, so that a stop reaches the
    user as dsgd's own line. Open MPI's mpirun ends a job about a second after SIGINT or SIGTERM, too
    soon for the ranks to checkpoint and say so; here the first SIGINT, SIGTERM or SIGHUP (Ctrl-C in a
    terminal, which now reaches this process only) becomes SIGUSR1 to mpirun, which forwards it: every
    rank checkpoints its step and rank 0 prints the stop line. A second one ends the job at once.
    SIGUSR1 and SIGUSR2 are passed on as they are. The status is mpirun's (128 + N for signal N)."""
    proc = subprocess.Popen(list(line), start_new_session=True)  # out of the terminal's process group
    stops = []

    def stop(signum, _frame):
        stops.append(signum)
        if len(stops) == 1:
            print(f"{prog}: {signal.Signals(signum).name}: every rank checkpoints its step and stops (send it again "
                  f"to end the job at once)", file=sys.stderr, flush=True)
            _signal(proc, signal.SIGUSR1)
        else:
            _signal(proc, signal.SIGKILL, group=True)

    def forward(signum, _frame):
        _signal(proc, signum)

    handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    handlers.update({sig: signal.signal(sig, forward) for sig in (signal.SIGUSR1, signal.SIGUSR2)})
    try:
        status = proc.wait()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return status if status >= 0 else 128 - status


def _signal(proc: subprocess.Popen, signum: int, group: bool = False) -> None:
    try:
        os.killpg(proc.pid, signum) if group else proc.send_signal(signum)
    except ProcessLookupError:  # it has just ended
        pass


if __name__ == "__main__":
    sys.exit(main())

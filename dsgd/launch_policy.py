"""The one place that decides an `mpirun` line: ranks, mapping, binding, threads, forwarded variables.

`launch/dsgd-mpirun` (what users run) and `dsgd.launcher` (what the demo, the experiments and the
tests run) both take their lines from `mpirun_line`, so what users run is what is tested.
Standard library only: the wrapper calls it with whatever python3 is on PATH.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple

# Forwarded to every rank (remote ones too) when set in the launching environment.
FORWARDED = ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES")
FORWARDED_PREFIXES = ("DSGD_", "NCCL_", "UCX_")
INTERPRETER = re.compile(r"(python|pypy)[0-9.]*")


class UsageError(ValueError):
    """Input the line cannot be built from; the user reads one line and the status is 2."""


def positive_int(name: str, value) -> int:
    text = str(value)
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{name} must be an integer >= 1, got '{text}'")
    return int(text)


@dataclass(frozen=True)
class Request:
    """What the caller asks for; None means "decide from the machine"."""

    command: Tuple[str, ...]
    np: Optional[int] = None
    hostfile: Optional[str] = None
    per_node: Optional[int] = None
    oversubscribe: bool = False
    threads: Optional[int] = None
    bind: Optional[str] = None                  # "core", "none", or None
    mca: Tuple[Tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Machine:
    """What the line depends on besides the request: cores per node, who runs it, the environment."""

    cores: int
    is_root: bool
    environ: Mapping[str, str]

    @classmethod
    def here(cls, environ: Optional[Mapping[str, str]] = None, uid: Optional[int] = None) -> "Machine":
        env = dict(os.environ if environ is None else environ)
        cores = env.get("DSGD_CORES_PER_NODE") or str(local_cores())
        cores_n = positive_int("DSGD_CORES_PER_NODE", cores)
        uid = os.geteuid() if uid is None else uid
        return cls(cores_n, uid == 0, env)

    @property
    def mpirun(self) -> str:
        return self.environ.get("DSGD_MPIRUN") or "mpirun"


def local_cores() -> int:
    """Cores this process may run on (its affinity, as `nproc` counts them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def hostfile_hosts(path: str) -> list:
    """(line number, host) of each host the hostfile names, in order."""
    hosts = []
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if words:
            hosts.append((number, words[0]))
    return hosts


def hostfile_slots(path: str, cores: int) -> list:
    """Slots of each host ("HOST slots=N", '#' comments); a host without slots= gets one per core."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"hostfile not found: {path}")
    slots = []
    for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        n = cores
        for word in words[1:]:
            if word.startswith("slots="):
                if not re.fullmatch(r"slots=[0-9]+", word) or int(word[len("slots="):]) < 1:
                    raise UsageError(f"hostfile {path} line {number}: {word} for host {words[0]}; slots must be "
                                     f"a whole number >= 1 (leave the host out to give it no ranks)")
                n = int(word[len("slots="):])
        slots.append(n)
    if not slots:
        raise UsageError(f"hostfile names no hosts: {path}")
    return slots


def under_mpi4py(command: Sequence[str]) -> list:
    """`python [options] ARGS` becomes `python [options] -m mpi4py ARGS`: an uncaught exception on one
    rank then aborts the whole job instead of leaving the others waiting. Other commands are unchanged."""
    command = list(command)
    if not command or not INTERPRETER.fullmatch(os.path.basename(command[0])):
        return command
    i = 1
    while i < len(command):
        word = command[i]
        if word in ("-X", "-W"):
            i += 2
        elif word in ("-m", "-c", "-") or not word.startswith("-"):
            break
        else:
            i += 1
    head, rest = command[:i], command[i:]
    if rest[:2] == ["-m", "mpi4py"]:
        return command
    return head + ["-m", "mpi4py"] + rest


def forwarded_variables(environ: Mapping[str, str]) -> list:
    names = [name for name in FORWARDED if name in environ]
    names += sorted(name for name in environ if name.startswith(FORWARDED_PREFIXES))
    return names


def skip_fabric_probe(request: Request, machine: Machine) -> bool:
    """A job on this one host moves its bytes through shared memory; Open MPI's libfabric transport
    would first spend about a second looking for a fabric (measured in docs/benchmarks.md). Skipped
    unless a hostfile spreads the job over hosts or the caller chose the transports (--mca btl, or
    OMPI_MCA_btl in the environment)."""
    chose_btl = any(key == "btl" for key, _ in request.mca) or "OMPI_MCA_btl" in machine.environ
    return request.hostfile is None and not chose_btl


def mpirun_line(request: Request, machine: Machine) -> list:
    """The mpirun argv for REQUEST on MACHINE; UsageError names the first thing wrong with it."""
    if not request.command:
        raise UsageError("no command given; usage: dsgd-mpirun [options] -- COMMAND [ARG...]")
    np = None if request.np is None else positive_int("-np", request.np)
    per_node = None if request.per_node is None else positive_int("--per-node", request.per_node)
    threads = None if request.threads is None else positive_int("--threads", request.threads)
    if request.bind not in (None, "core", "none"):
        raise UsageError(f"--bind must be core or none, got '{request.bind}'")
    cores = machine.cores
    slots = hostfile_slots(request.hostfile, cores) if request.hostfile else [cores]

    # Ranks in the job, and on the busiest node (the one that sets the thread count).
    if np is None:
        np = per_node * len(slots) if per_node else sum(slots)
    if per_node:
        ranks_per_node = per_node
    elif request.hostfile:
        ranks_per_node = min(np, max(slots))
    else:
        ranks_per_node = np
    if threads is None:
        threads = max(1, cores // ranks_per_node)
    bind = request.bind
    if bind is None:
        # Binding only helps when every rank can own its cores; otherwise ranks would be
        # stacked on the same cores while others sit idle.
        fits = not request.oversubscribe and ranks_per_node * threads <= cores
        bind = "core" if fits else "none"

    map_by = f"ppr:{per_node}:node" if per_node else "slot"
    bind_to = bind
    if bind == "core":
        map_by += f":PE={threads}"
        if request.oversubscribe:
            bind_to = "core:overload-allowed"
    if request.oversubscribe:
        map_by += ":OVERSUBSCRIBE"

    line = [machine.mpirun]
    if machine.is_root:
        line.append("--allow-run-as-root")
    line += ["-np", str(np)]
    if request.hostfile:
        line += ["--hostfile", request.hostfile]
    line += ["--map-by", map_by, "--bind-to", bind_to]
    if request.oversubscribe:  # more ranks than cores: a rank waiting in a collective gives its core away
        line += ["--mca", "mpi_yield_when_idle", "1"]
    if skip_fabric_probe(request, machine):
        line += ["--mca", "btl", "^ofi"]
    for key, value in request.mca:
        line += ["--mca", key, value]
    line += ["-x", f"OMP_NUM_THREADS={threads}", "-x", f"MKL_NUM_THREADS={threads}"]
    for name in forwarded_variables(machine.environ):
        line += ["-x", name]
    return line + under_mpi4py(request.command)

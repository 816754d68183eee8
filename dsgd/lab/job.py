"""The one MPI job across the lab's hosts: a hostfile of their addresses, mpirun started inside the
first host, and an rsh agent that enters a namespace where ssh would log in to a machine.

The mpirun line comes from dsgd's launch policy (`dsgd.launch_policy`), as `launch/dsgd-mpirun`
builds it, with what a namespace cluster needs on top: the agent, no tree spawn (the agent only
runs here), TCP between hosts and shared memory inside one, and both limited to the lab's subnet.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, Optional

from dsgd.lab.network import SUBNET, Layout
from dsgd.launch_policy import Machine, Request, local_cores, mpirun_line
from dsgd.launcher import supervise

AGENT = Path(__file__).resolve().with_name("rsh_agent.sh")
REPO = Path(__file__).resolve().parents[2]
GRACE_S = 20.0     # after --timeout, how long the ranks get to checkpoint before the job is killed


def hostfile_text(layout: Layout) -> str:
    slots = layout.spec.ranks_per_host
    return "".join(f"{h.address} slots={slots}\n" for h in layout.hosts)


def job_variables(layout: Layout, environ: Mapping[str, str]) -> dict:
    """What the job needs set: the agent's address map, and dsgd on PYTHONPATH for every rank."""
    return {"DSGD_LAB_HOSTS": " ".join(f"{h.address}={h.namespace}" for h in layout.hosts),
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), environ.get("PYTHONPATH", "")) if p)}


def job_line(layout: Layout, hostfile: str, environ: Optional[Mapping[str, str]] = None,
             uid: Optional[int] = None) -> list:
    """argv, ready to paste in a shell: set the job's variables, enter the first host (its namespace
    and hostname), and run mpirun over every host from there."""
    spec = layout.spec
    environ = dict(os.environ if environ is None else environ)
    variables = job_variables(layout, environ)
    # All hosts share this machine's cores: one share each, and no binding (it would pile ranks up).
    threads = max(1, local_cores() // spec.ranks)
    mca = (("plm_rsh_agent", str(AGENT)), ("plm_rsh_no_tree_spawn", "1"), ("btl", "tcp,sm,self"),
           ("btl_tcp_if_include", SUBNET), ("oob_tcp_if_include", SUBNET), ("mpi_yield_when_idle", "1"))
    request = Request(command=spec.command, np=spec.ranks, hostfile=hostfile, threads=threads, bind="none",
                      mca=mca)
    first = layout.hosts[0].namespace
    mpirun = mpirun_line(request, Machine.here({**environ, **variables}, uid=uid))
    return ["env", *(f"{k}={v}" for k, v in variables.items()),
            "ip", "netns", "exec", first, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', first, *mpirun]


def run_job(line: list, timeout: Optional[float], prog: str) -> tuple:
    """(exit status, wall seconds) of the job, run under dsgd's supervision: a first Ctrl-C or SIGTERM
    asks every rank to checkpoint and stop, a second ends the job. TIMEOUT seconds act as a first
    stop, and GRACE_S later as a second."""
    timers = []
    if timeout:
        def stop(note: str) -> None:
            print(f"{prog}: {note}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
        timers = [threading.Timer(timeout, stop, [f"the job ran past --timeout {timeout:g} s"]),
                  threading.Timer(timeout + GRACE_S, stop, [f"ending the job ({GRACE_S:g} s after the timeout)"])]
    start = time.perf_counter()
    try:
        for timer in timers:
            timer.daemon = True
            timer.start()
        status = supervise(line, prog)
    finally:
        for timer in timers:
            timer.cancel()
    return status, time.perf_counter() - start

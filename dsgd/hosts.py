"""Before a multi-host job starts: does every remote host of the hostfile answer?

Open MPI starts its daemons on the other hosts through an "rsh agent" (ssh by default). An address
that nothing answers makes ssh wait for minutes, and mpirun with it, deaf to Ctrl-C. Here each
remote host is asked to run `true` through the same agent, all at once, and a host that has not
answered within the timeout is named in one line before any rank starts. Hosts that are this
machine are not asked: mpirun starts their ranks without the agent."""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence, Tuple

from dsgd.launch_policy import UsageError, hostfile_hosts

AGENT_PARAMETERS = ("plm_rsh_agent", "plm_ssh_agent")


def rsh_agent(mca: Sequence[Tuple[str, str]], environ: Mapping[str, str]) -> list:
    """The agent mpirun will use: --mca plm_rsh_agent, else the environment's, else ssh. Open MPI
    accepts alternatives separated by ':' and takes the first it finds; so does this."""
    value = next((v for k, v in reversed(list(mca)) if k in AGENT_PARAMETERS), None)
    for prefix in ("OMPI_MCA_", "PRTE_MCA_"):
        for name in AGENT_PARAMETERS:
            value = value or environ.get(prefix + name)
    for choice in (value or "ssh").split(":"):
        words = shlex.split(choice)
        if words and (os.path.isfile(words[0]) or _on_path(words[0], environ)):
            return words
    return shlex.split((value or "ssh").split(":")[0])


def _on_path(name: str, environ: Mapping[str, str]) -> bool:
    return any(os.access(os.path.join(d, name), os.X_OK) for d in environ.get("PATH", "").split(os.pathsep) if d)


def local_addresses() -> set:
    """Names and IPv4 addresses of this machine (in this network namespace)."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.gethostname().split(".")[0]}
    try:  # the kernel's table of local routes holds every address of this machine
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        for before, line in zip(lines, lines[1:]):
            if "/32 host LOCAL" in line:
                names.add(before.split()[-1])
    except OSError:
        pass
    return names


def is_local(host: str, local: set) -> bool:
    if host in local or host.startswith("127."):
        return True
    try:
        socket.inet_aton(host)
        return False  # an address that is not one of ours
    except OSError:
        pass
    try:
        return socket.gethostbyname(host) in local
    except OSError:
        return False  # unknown name: the agent reports it


def check_hosts(hostfile: str, mca: Sequence[Tuple[str, str]], environ: Mapping[str, str], timeout: float) -> None:
    """UsageError naming the first remote host that did not run `true` through the agent within
    TIMEOUT seconds, or whose agent failed; nothing when all answered."""
    local = local_addresses()
    remote = [(n, h) for n, h in hostfile_hosts(hostfile) if not is_local(h, local)]
    if not remote:
        return
    agent = rsh_agent(mca, environ)
    options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(timeout))}"] \
        if os.path.basename(agent[0]) == "ssh" else []
    probes = [(n, h, subprocess.Popen([*agent, *options, h, "true"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                      start_new_session=True, env=dict(environ)))
              for n, h in remote]
    deadline = time.monotonic() + timeout
    problem = None
    try:
        for number, host, proc in probes:
            try:
                status = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                problem = problem or (f"host {host} (hostfile {hostfile} line {number}) did not answer within "
                                      f"{timeout:g}s ({shlex.join([*agent, host, 'true'])} still waiting): check "
                                      f"the address and that it is up, or leave it out of the hostfile "
                                      f"(--host-timeout S waits longer)")
                continue
            if status != 0 and problem is None:
                said = (proc.stderr.read() or "").strip().splitlines()
                problem = (f"host {host} (hostfile {hostfile} line {number}) cannot be reached: "
                           f"{shlex.join([*agent, host, 'true'])} ended with status {status}"
                           + (f" ({said[-1]})" if said else ""))
    finally:
        for _, _, proc in probes:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            proc.stderr.close()
    if problem:
        raise UsageError(problem)

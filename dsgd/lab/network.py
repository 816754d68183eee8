"""The lab's network: one namespace per host, a switch namespace of bridges, veth cables between.

    host h0 (namespace, eth0 10.77.0.1) ──veth── port h0 ┐
    host h1 (namespace, eth0 10.77.0.2) ──veth── port h1 ┴ br0   (switch namespace)

With racks, each rack has its own bridge, joined to a `core` bridge by an uplink veth (`up{g}` on
the rack side, `down{g}` on the core side). Everything lives in namespaces this lab creates, so
the machine's own network is never touched; deleting the namespaces removes every bridge, veth
and qdisc with them. Names carry the lab's process id, so the namespaces of a lab that was killed
outright are recognised and removed by the next one (`sweep_stale`).
"""
from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from typing import List, Optional

from dsgd.lab.shaping import tbf_command
from dsgd.lab.spec import LabSpec

PREFIX = "dsgdlab"
OWNER = re.compile(rf"^{PREFIX}(\d+)-")
SUBNET = "10.77.0.0/24"
STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_serial = itertools.count()


class LabUnavailable(RuntimeError):
    """This machine does not let the lab be built (no root, no namespaces, no tbf); one line, status 3."""


@dataclass(frozen=True)
class Host:
    index: int
    name: str          # h0, h1, ...: what reports call it
    namespace: str     # also its hostname, which is how Open MPI tells hosts apart
    address: str
    group: int


@dataclass(frozen=True)
class Port:
    """An interface whose kernel counters the report reads: a host's NIC, or a rack's uplink."""

    label: str
    namespace: str
    device: str


class Layout:
    """Names, addresses and the ip / tc commands for a LabSpec: a plan, nothing is run here."""

    def __init__(self, spec: LabSpec, tag: Optional[str] = None):
        self.spec = spec
        self.tag = tag or f"{PREFIX}{os.getpid()}-{next(_serial)}"
        self.switch = f"{self.tag}-sw"
        self.hosts = [Host(i, f"h{i}", f"{self.tag}-h{i}", f"10.77.0.{i + 1}", spec.group_of(i))
                      for i in range(spec.hosts)]

    @property
    def namespaces(self) -> List[str]:
        return [self.switch] + [h.namespace for h in self.hosts]

    def nics(self) -> List[Port]:
        return [Port(h.name, h.namespace, "eth0") for h in self.hosts]

    def uplinks(self) -> List[Port]:
        """Rack g's uplink, seen from the rack: tx is what left the rack, rx what came into it."""
        if not self.spec.group_size:
            return []
        return [Port(f"rack{g}", self.switch, f"up{g}") for g in range(self.spec.groups)]

    def bridge_of(self, host: Host) -> str:
        return f"rack{host.group}" if self.spec.group_size else "br0"

    def setup_commands(self) -> List[list]:
        sw = ["ip", "-n", self.switch]
        cmds = [["ip", "netns", "add", self.switch]]
        bridges = [f"rack{g}" for g in range(self.spec.groups)] + ["core"] if self.spec.group_size else ["br0"]
        for bridge in bridges:
            cmds += [sw + ["link", "add", bridge, "type", "bridge"], sw + ["link", "set", bridge, "up"]]
        for port in self.uplinks():
            g = port.device[len("up"):]
            cmds += [sw + ["link", "add", f"up{g}", "type", "veth", "peer", "name", f"down{g}"],
                     sw + ["link", "set", f"up{g}", "master", f"rack{g}", "up"],
                     sw + ["link", "set", f"down{g}", "master", "core", "up"]]
        for h in self.hosts:
            ns = ["ip", "-n", h.namespace]
            cmds += [["ip", "netns", "add", h.namespace], ns + ["link", "set", "lo", "up"],
                     ns + ["link", "add", "eth0", "type", "veth", "peer", "name", h.name, "netns", self.switch],
                     sw + ["link", "set", h.name, "master", self.bridge_of(h), "up"],
                     ns + ["addr", "add", f"{h.address}/24", "dev", "eth0"], ns + ["link", "set", "eth0", "up"]]
        return cmds + self.shaping_commands()

    def shaping_commands(self) -> List[list]:
        """tbf on both ends of every host cable (upload and download), and of every rack uplink."""
        rate, uplink = self.spec.rate, self.spec.group_rate
        cmds = []
        for h in self.hosts:
            cmds += [tbf_command(h.namespace, "eth0", rate), tbf_command(self.switch, h.name, rate)]
        for port in self.uplinks():
            g = port.device[len("up"):]
            cmds += [tbf_command(self.switch, f"up{g}", uplink), tbf_command(self.switch, f"down{g}", uplink)]
        return [c for c in cmds if c is not None]


def _run(argv: list) -> None:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise LabUnavailable(f"`{argv[0]}` not found (apt-get install iproute2)") from None
    if res.returncode == 0:
        return
    said = (res.stderr.strip().splitlines() or ["no message"])[-1]
    if argv[:3] == ["ip", "netns", "add"]:
        raise LabUnavailable(f"network namespaces are not permitted (ip netns add: {said})")
    if argv[0] == "tc":
        raise LabUnavailable(f"the tbf qdisc is not available (tc: {said})")
    raise LabUnavailable(f"setting up the network failed: {' '.join(argv)}: {said}")


class Network:
    """A Layout brought up on entry and removed on exit, whatever happened in between."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.created: List[str] = []

    def __enter__(self) -> "Network":
        try:
            for argv in self.layout.setup_commands():
                _run(argv)
                if argv[:3] == ["ip", "netns", "add"]:
                    self.created.append(argv[3])
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def down(self) -> None:
        """Kill what still runs in the namespaces (daemons a failed job left), then delete them:
        their bridges, veths and qdiscs go with them. Stop signals wait until this is done, so a
        second Ctrl-C cannot cut the removal short."""
        signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
        try:
            remove_namespaces(self.created)
            self.created = []
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)


def remove_namespaces(names: List[str]) -> None:
    for ns in names:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30).stdout
        for pid in pids.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    for ns in names:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def existing_namespaces() -> List[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def sweep_stale() -> List[str]:
    """Remove the namespaces of labs whose process is gone (killed before it could clean up)."""
    stale = []
    for ns in existing_namespaces():
        match = OWNER.match(ns)
        if match and not _alive(int(match.group(1))):
            stale.append(ns)
    remove_namespaces(stale)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

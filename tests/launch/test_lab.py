"""The network lab (dsgd/lab, launch/dsgd-lab): what it is asked, what it builds, what it reports.

In-process tests read the plan (ip and tc commands, the mpirun line) and the report without
root. The rest build real namespaces and skip, with the lab's own one-line reason, where the
machine does not allow them: a shaped link carries its rate, a rack uplink holds hosts to its
slower rate, a short training across two hosts reports kernel bytes of at least dsgd's own count,
and the lab leaves nothing behind when the job fails or is stopped.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsgd.lab import cli, report
from dsgd.lab.job import hostfile_text, job_line
from dsgd.lab.measure import measure_rate
from dsgd.lab.network import Layout, LabUnavailable, Network, existing_namespaces
from dsgd.lab.preflight import why_not_here
from dsgd.lab.shaping import burst_bytes
from dsgd.lab.spec import LabError, LabSpec, format_rate, make_spec, parse_rate
from launch_helpers import REPO, launch_env

LAB = REPO / "launch" / "dsgd-lab"


# -- what is asked -----------------------------------------------------------------------------
@pytest.mark.parametrize("text, bits", [("200mbit", 200 * 10 ** 6), ("1gbit", 10 ** 9), ("1.5Gbit", 15 * 10 ** 8),
                                        ("500kbit", 500_000), ("unlimited", None)])
def test_rates_are_read_as_tc_writes_them(text, bits):
    assert parse_rate(text) == bits


@pytest.mark.parametrize("text", ["fast", "200", "200mbps", "-1mbit", "0bit", "1tbit", ""])
def test_a_rate_that_is_not_one_is_refused(text):
    with pytest.raises(LabError, match="--rate"):
        parse_rate(text)


def test_rates_print_in_their_largest_unit():
    assert [format_rate(b) for b in (50 * 10 ** 6, 10 ** 9, 64_000, None)] == \
           ["50 Mbit/s", "1 Gbit/s", "64 kbit/s", "unlimited"]


@pytest.mark.parametrize("argv, says", [
    (["--rate", "fast", "--", "true"], "--rate must be a rate like 200mbit"),
    (["--hosts", "0", "--rate", "1gbit", "--", "true"], "--hosts must be a whole number from 1"),
    (["--rate", "1gbit"], "no command given"),
    (["--rate", "1gbit", "--"], "no command given"),
    (["--rate", "1gbit", "python", "train.py"], "'python' is not an option: the command goes after --"),
    (["--", "true"], "--rate is required"),
    (["--rate", "1gbit", "--group-size", "2", "--", "true"], "--group-size and --group-rate go together"),
    (["--hosts", "2", "--rate", "1gbit", "--group-size", "3", "--group-rate", "1mbit", "--", "true"],
     "--group-size must be a whole number from 1 to 2"),
    (["--rate", "1gbit", "--timeout", "0", "--", "true"], "--timeout must be seconds > 0"),
    (["--rate", "1gbit", "--bogus", "--", "true"], "unknown option --bogus"),
    (["--hosts", "1", "--rate", "1gbit", "--measure", "--", "true"], "--measure needs at least 2 hosts"),
])
def test_bad_input_is_one_line_and_status_2(argv, says, capsys):
    assert cli.main(argv, prog="dsgd-lab") == 2
    err = capsys.readouterr().err
    assert err.startswith("dsgd-lab: error: ") and says in err and err.count("\n") == 1, err


def test_without_root_or_tools_the_reason_is_one_line(tmp_path):
    assert why_not_here(uid=1000) == "network namespaces and tc need root (running as uid 1000)"
    assert why_not_here({"PATH": str(tmp_path)}, uid=0) == "`ip` not found (apt-get install iproute2)"


# -- what is built -----------------------------------------------------------------------------
def racks_of_two() -> Layout:
    return Layout(make_spec(4, 2, "50mbit", ["true"], group_size=2, group_rate="20mbit"), tag="lab")


def test_every_host_link_is_shaped_both_ways_and_every_rack_uplink_at_its_rate():
    tbf = [c for c in racks_of_two().setup_commands() if c[0] == "tc"]
    shaped = {(c[2], c[6]): c[c.index("rate") + 1] for c in tbf}
    hosts = {(f"lab-h{i}", "eth0"): "50000000bit" for i in range(4)}          # what a host sends
    ports = {("lab-sw", f"h{i}"): "50000000bit" for i in range(4)}             # what a host receives
    uplinks = {("lab-sw", f"{end}{g}"): "20000000bit" for g in range(2) for end in ("up", "down")}
    assert shaped == {**hosts, **ports, **uplinks}


def test_hosts_sit_on_their_racks_bridge_with_their_own_address():
    layout = racks_of_two()
    cmds = layout.setup_commands()
    for h in layout.hosts:
        assert ["ip", "-n", "lab-sw", "link", "set", h.name, "master", f"rack{h.index // 2}", "up"] in cmds
        assert ["ip", "-n", h.namespace, "addr", "add", f"{h.address}/24", "dev", "eth0"] in cmds
    assert len({h.address for h in layout.hosts}) == 4
    assert [p.label for p in layout.uplinks()] == ["rack0", "rack1"]


def test_an_unlimited_lab_has_no_qdisc_and_one_bridge():
    cmds = Layout(make_spec(3, 1, "unlimited", ["true"]), tag="lab").setup_commands()
    assert not [c for c in cmds if c[0] == "tc"]
    assert [c[5] for c in cmds if c[4:6] == ["add", "br0"]] == ["br0"]


def test_the_bucket_holds_a_full_packet_and_4_ms_at_high_rates():
    assert burst_bytes(50 * 10 ** 6) == 64 * 1024
    assert burst_bytes(10 ** 9) == 500_000


def test_the_job_starts_in_the_first_host_and_reaches_the_others_through_the_agent(tmp_path):
    layout = racks_of_two()
    hostfile = tmp_path / "hostfile"
    hostfile.write_text(hostfile_text(layout))
    assert hostfile.read_text().splitlines() == [f"10.77.0.{i} slots=2" for i in range(1, 5)]
    line = job_line(layout, str(hostfile), environ={"PATH": os.environ["PATH"]}, uid=0)
    assert line[line.index("ip"):line.index("ip") + 4] == ["ip", "netns", "exec", "lab-h0"]
    mpirun = line[line.index("mpirun"):]
    assert mpirun[mpirun.index("-np") + 1] == "8"
    mca = {mpirun[i + 1]: mpirun[i + 2] for i, w in enumerate(mpirun) if w == "--mca"}
    assert mca["plm_rsh_agent"].endswith("dsgd/lab/rsh_agent.sh")
    assert mca["btl"] == "tcp,sm,self" and mca["btl_tcp_if_include"] == "10.77.0.0/24"
    assert "DSGD_LAB_HOSTS=" + " ".join(f"10.77.0.{i + 1}=lab-h{i}" for i in range(4)) in line
    assert mpirun[-1] == "true"


# -- what is reported --------------------------------------------------------------------------
def test_the_run_directory_is_the_commands_out():
    assert report.run_dir_of(["python", "-m", "dsgd.train", "--out", "runs/a"]) == Path("runs/a")
    assert report.run_dir_of(["python", "-m", "dsgd.train", "--out=runs/b"]) == Path("runs/b")
    assert report.run_dir_of(["python", "-m", "dsgd.train"]) == Path("runs/latest")
    assert report.run_dir_of(["sleep", "1"]) is None


def fake_run(path: Path, workers_per_rank: int = 2) -> Path:
    path.mkdir()
    rows = [{"step": 5, "bytes_sent": 1e6, "wall_s": 1.0, "compute_s": 0.5, "comm_s": 0.2},
            {"step": 10, "bytes_sent": 2e6, "wall_s": 2.0, "compute_s": 1.0, "comm_s": 0.5}]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 1')
    (path / "config.yaml").write_text(f"run:\n  seed: 0\n  workers_per_rank: {workers_per_rank}\n")
    return path


def test_dsgds_side_is_its_last_row_per_step_and_per_host(tmp_path):
    run = report.read_run(fake_run(tmp_path / "run"), since=0)
    layout = Layout(make_spec(2, 1, "16mbit", ["x"]), tag="lab")
    moved = {"h0": (4_500_000, 4_400_000), "h1": (4_300_000, 4_600_000)}
    result = report.build(layout, moved, 0, 3.0, ["x"], run)
    assert [h["dsgd_sent_bytes"] for h in result["hosts"]] == [4e6, 4e6]    # 2 workers x 2 MB
    d = result["dsgd"]
    assert (d["steps"], d["wall_s_per_step"], d["compute_s_per_step"], d["comm_s_per_step"]) == (10, 0.2, 0.1, 0.05)
    assert d["other_s_per_step"] == pytest.approx(0.05)
    assert d["link_s_per_step"] == pytest.approx(4e6 * 8 / 16e6 / 10)       # 0.2 s per step at 16 Mbit/s
    text = report.table(result)
    assert "kernel/dsgd" in text and "1.125" in text and "compute 100.0 + comm 50.0 + other 50.0 ms" in text


def test_an_older_run_in_the_directory_is_not_read_as_this_jobs(tmp_path):
    path = fake_run(tmp_path / "run")
    assert report.read_run(path, since=time.time() + 60) is None


# -- real namespaces ---------------------------------------------------------------------------
def lab_or_skip(spec: LabSpec) -> Network:
    reason = why_not_here(launch_env())
    if reason:
        pytest.skip(f"the lab cannot run here: {reason}")
    try:
        return Network(Layout(spec)).__enter__()
    except LabUnavailable as e:
        pytest.skip(f"the lab cannot run here: {e}")


def own_namespaces(pid: int) -> list:
    return [ns for ns in existing_namespaces() if ns.startswith(f"dsgdlab{pid}-")]


@pytest.mark.timeout(60)
def test_a_rack_uplink_holds_two_hosts_to_its_slower_rate():
    """Hosts at 200 Mbit/s in different racks joined at 20 Mbit/s: a transfer between them gets 20,
    less the ~4% of TCP/IP headers the receiver does not count."""
    network = lab_or_skip(make_spec(2, 1, "200mbit", ["true"], group_size=1, group_rate="20mbit"))
    try:
        h0, h1 = network.layout.hosts
        rate = measure_rate(h0.namespace, h1.namespace, h1.address, 1_500_000)
    finally:
        network.down()
    assert 0.85 * 20e6 <= rate <= 1.05 * 20e6, rate
    assert not own_namespaces(os.getpid())


def run_lab(args: list, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(LAB), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=launch_env())


def skip_unless_permitted(res: subprocess.CompletedProcess) -> None:
    if res.returncode == 3 and "cannot run here" in res.stderr:
        pytest.skip(res.stderr.strip())


@pytest.mark.timeout(120)
def test_a_short_training_across_two_shaped_hosts(tmp_path):
    """2 hosts x 1 rank at 50 Mbit/s: the transfer the lab measures first carries 50 Mbit/s within
    15%; the job trains; each host's NIC sent at least the bytes dsgd counted for its worker; the
    report splits a step into compute and communication; no namespace is left."""
    report_file = tmp_path / "lab.json"
    res = run_lab(["--hosts", "2", "--rate", "50mbit", "--measure", "--json", str(report_file), "--timeout", "90",
                   "--", sys.executable, "-m", "dsgd.train", "--model", "mlp", "--dataset", "synthetic",
                   "--algorithm", "dsgd", "--topology", "complete", "--epochs", "1", "--steps-per-epoch", "4",
                   "--batch-size", "16", "--eval-every", "4", "--out", str(tmp_path / "run")], timeout=110)
    skip_unless_permitted(res)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    result = json.loads(report_file.read_text())
    assert 0.85 * 50e6 <= result["measured_bits_per_s"] <= 1.15 * 50e6, result["measured_bits_per_s"]
    assert result["dsgd"]["steps"] == 4
    for host in result["hosts"]:
        assert host["dsgd_sent_bytes"] > 100_000, host        # the MLP's parameters went out each step
        assert host["sent_bytes"] >= host["dsgd_sent_bytes"], host
    d = result["dsgd"]
    assert d["compute_s_per_step"] > 0 and d["comm_s_per_step"] > 0
    # At 50 Mbit/s a step cannot communicate faster than its bytes cross the link.
    assert d["comm_s_per_step"] >= 0.9 * d["link_s_per_step"], d
    assert "kernel/dsgd" in res.stdout and "dsgd per step" in res.stdout
    assert not [ns for ns in existing_namespaces() if ns in {h["namespace"] for h in result["hosts"]}]


@pytest.mark.timeout(60)
def test_a_missing_tbf_is_one_line_and_nothing_is_left(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "tc").write_text('#!/bin/sh\necho "Error: Specified qdisc kind is unknown." >&2\nexit 2\n')
    (fake / "tc").chmod(0o755)
    proc = subprocess.Popen([str(LAB), "--hosts", "2", "--rate", "1gbit", "--", "true"], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=launch_env({"PATH": f"{fake}{os.pathsep}{launch_env()['PATH']}"}))
    out, err = proc.communicate(timeout=50)
    if "tbf" not in err:
        skip_unless_permitted(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert proc.returncode == 3
    assert err == "dsgd-lab: cannot run here: the tbf qdisc is not available (tc: Error: Specified qdisc kind " \
                  "is unknown.)\n"
    assert not own_namespaces(proc.pid)


@pytest.mark.timeout(60)
def test_a_stopped_job_leaves_no_namespace_and_no_process(tmp_path):
    marker = f"dsgd-lab-test-{os.getpid()}"
    proc = subprocess.Popen([str(LAB), "--hosts", "2", "--rate", "1gbit", "--", "sh", "-c",
                             f"sleep 60; : {marker}"], cwd=REPO, text=True, env=launch_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while time.time() < deadline and len(_processes(marker)) < 2 and proc.poll() is None:
        time.sleep(0.1)
    if proc.poll() is not None:
        out, err = proc.communicate()
        skip_unless_permitted(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        pytest.fail(f"the lab ended before its job started: {err[-2000:]}")
    assert len(_processes(marker)) == 2                       # one rank on each host
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)                          # the second one ends the job at once
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert not own_namespaces(proc.pid)
    assert not _processes(marker)
    assert "SIGTERM" in err


def _processes(marker: str) -> list:
    """Pids of the job's ranks: `sh -c "...MARKER"` processes."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_text().split("\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if argv[:2] == ["sh", "-c"] and len(argv) > 2 and marker in argv[2]:
            found.append(int(entry.name))
    return found

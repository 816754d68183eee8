"""launch/dsgd-mpirun: the mpirun line it builds (--dry-run), its usage errors, and real runs."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch_helpers import REPO, WRAPPER, launch_env, run_with_timeout


def dry_run(*args: str, env: dict | None = None, cwd: Path | None = None) -> list:
    """The argv of the mpirun line the wrapper would run."""
    base = {"DSGD_CORES_PER_NODE": "8"}   # the same thread arithmetic on any machine
    res = run_with_timeout([str(WRAPPER), "--dry-run", *args], timeout=30,
                           env=launch_env({**base, **(env or {})}), cwd=cwd)
    assert res.returncode == 0, res.stdout
    return shlex.split(res.stdout)


def option_values(argv: list, option: str) -> list:
    return [argv[i + 1] for i, word in enumerate(argv) if word == option]


def fake_uid_dir(tmp_path: Path, uid: int) -> str:
    """A PATH entry whose `id` reports UID, to see the wrapper as a non-root user would."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (fake / "id").chmod(0o755)
    return str(fake)


def test_root_flag_only_for_root(tmp_path):
    assert ("--allow-run-as-root" in dry_run("-np", "2", "--", "true")) == (os.geteuid() == 0)
    as_user = launch_env()["PATH"]
    user_path = fake_uid_dir(tmp_path, 1000) + os.pathsep + as_user
    argv = dry_run("-np", "2", "--", "true", env={"PATH": user_path})
    assert "--allow-run-as-root" not in argv


def test_oversubscribe_only_when_asked():
    plain = dry_run("-np", "2", "--", "true")
    assert not any("oversubscribe" in word.lower() for word in plain)
    assert option_values(plain, "--bind-to") == ["core"]
    over = dry_run("-np", "16", "--oversubscribe", "--", "true")
    assert option_values(over, "--map-by") == ["slot:OVERSUBSCRIBE"]
    assert option_values(over, "--bind-to") == ["none"]
    assert ["--mca", "mpi_yield_when_idle", "1"] == over[over.index("--mca"):over.index("--mca") + 3]


def test_a_one_host_job_skips_the_fabric_probe_unless_the_transports_are_chosen(tmp_path):
    # one host: shared memory carries the bytes, libfabric's probe would only cost a second per job
    assert option_values(dry_run("-np", "2", "--", "true"), "--mca") == ["btl"]
    plain = dry_run("-np", "2", "--", "true")
    assert plain[plain.index("--mca"):plain.index("--mca") + 3] == ["--mca", "btl", "^ofi"]
    # the user's choice of transports wins, given as an option or in the environment
    chosen = dry_run("-np", "2", "--mca", "btl", "self,tcp", "--", "true")
    assert chosen.count("btl") == 1 and chosen[chosen.index("btl") + 1] == "self,tcp"
    assert "btl" not in dry_run("-np", "2", "--", "true", env={"OMPI_MCA_btl": "self,sm"})
    # a hostfile spreads the job over hosts, where a fabric may be what carries it
    hostfile = tmp_path / "hosts"
    hostfile.write_text("localhost slots=2\n")
    assert "btl" not in dry_run("--hostfile", str(hostfile), "--", "true")


@pytest.mark.parametrize("args, threads, map_by, bind", [
    (["-np", "4"], 2, "slot:PE=2", "core"),                              # 8 cores / 4 ranks
    (["-np", "16"], 1, "slot", "none"),                                  # more ranks than cores
    (["-np", "2", "--threads", "3"], 3, "slot:PE=3", "core"),
    (["-np", "4", "--per-node", "2"], 4, "ppr:2:node:PE=4", "core"),
    (["-np", "4", "--bind", "none"], 2, "slot", "none"),
])
def test_threads_and_binding(args, threads, map_by, bind):
    argv = dry_run(*args, "--", "true")
    exported = option_values(argv, "-x")
    assert f"OMP_NUM_THREADS={threads}" in exported and f"MKL_NUM_THREADS={threads}" in exported
    assert option_values(argv, "--map-by") == [map_by]
    assert option_values(argv, "--bind-to") == [bind]


def test_environment_forwarding():
    env = {"PYTHONPATH": "/somewhere", "DSGD_DATA_DIR": "/data", "DSGD_CORES_PER_NODE": "8",
           "NCCL_DEBUG": "INFO", "NCCL_SOCKET_IFNAME": "eth0", "UCX_TLS": "rc,cuda_copy", "CUDA_VISIBLE_DEVICES": "0,1"}
    exported = option_values(dry_run("-np", "1", "--", "true", env=env), "-x")
    assert {"PATH", "PYTHONPATH", "DSGD_DATA_DIR", "DSGD_CORES_PER_NODE", "NCCL_DEBUG", "NCCL_SOCKET_IFNAME",
            "UCX_TLS", "CUDA_VISIBLE_DEVICES"} <= set(exported)
    unset = launch_env()
    unset.pop("LD_LIBRARY_PATH", None)
    res = run_with_timeout([str(WRAPPER), "--dry-run", "-np", "1", "--", "true"], 30, env=unset)
    assert "LD_LIBRARY_PATH" not in option_values(shlex.split(res.stdout), "-x")


@pytest.mark.parametrize("command, expected_tail", [
    (["python", "-m", "dsgd.train", "--epochs", "1"],
     ["python", "-m", "mpi4py", "-m", "dsgd.train", "--epochs", "1"]),
    ([sys.executable, "-u", "script.py"], [sys.executable, "-u", "-m", "mpi4py", "script.py"]),
    (["python3", "-m", "mpi4py", "x.py"], ["python3", "-m", "mpi4py", "x.py"]),    # not doubled
    (["./train.sh", "python"], ["./train.sh", "python"]),                       # not a python command
])
def test_python_ranks_run_under_mpi4py(command, expected_tail):
    argv = dry_run("-np", "2", "--", *command)
    assert argv[-len(expected_tail):] == expected_tail


def test_hostfile_sets_the_rank_count(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# two nodes\nnode01 slots=2\nnode02 slots=3  # bigger\n\n")
    argv = dry_run("--hostfile", str(hostfile), "--", "true")
    assert option_values(argv, "-np") == ["5"] and option_values(argv, "--hostfile") == [str(hostfile)]
    per_node = dry_run("--hostfile", str(hostfile), "--per-node", "1", "--", "true")
    assert option_values(per_node, "-np") == ["2"]
    # The repository's example hostfile: four slots on this machine.
    assert option_values(dry_run("--hostfile", "hostfile", "--", "true", cwd=REPO), "-np") == ["4"]


@pytest.mark.parametrize("args, message", [
    (["--hostfile", "/nonexistent/hosts", "--", "true"], "hostfile not found"),
    (["-np", "0", "--", "true"], "-np must be an integer >= 1"),
    (["-np", "two", "--", "true"], "-np must be an integer >= 1"),
    (["-np", "2"], "no command given"),
    (["-np", "2", "--bind", "socket", "--", "true"], "--bind must be core or none"),
    (["--frobnicate", "--", "true"], "unknown option --frobnicate"),
    # on one machine the program must be there before mpirun starts it (not mpirun's many-line complaint)
    (["-np", "1", "--", "/nonexistent/prog"], "command not found: /nonexistent/prog (the program after --"),
    (["-np", "1", "--", "no-such-program-here", "--flag"], "command not found: no-such-program-here"),
])
def test_usage_errors_are_one_line_with_status_2(args, message):
    res = run_with_timeout([str(WRAPPER), *args], timeout=30)
    assert res.returncode == 2
    assert res.stdout.count("\n") == 1 and message in res.stdout


@pytest.mark.parametrize("line, message", [
    ("node01 slots=0", "line 1: slots=0 for host node01; slots must be a whole number >= 1"),
    ("node01 slots=2\nnode02 slots=many", "line 2: slots=many for host node02"),
])
def test_a_hostfile_host_without_slots_is_refused_by_line(tmp_path, line, message):
    (tmp_path / "hosts").write_text(line + "\n")
    res = run_with_timeout([str(WRAPPER), "--dry-run", "--hostfile", str(tmp_path / "hosts"), "--", "true"],
                           timeout=30)
    assert res.returncode == 2
    assert res.stdout == f"dsgd-mpirun: error: hostfile {tmp_path / 'hosts'} {message}" + res.stdout.split(message)[1]
    assert res.stdout.count("\n") == 1


def test_a_host_that_never_answers_is_named_within_the_host_timeout(tmp_path):
    """An unreachable address makes ssh (and mpirun with it) wait for minutes; a stand-in agent that
    never answers plays that host, and the launcher names it before any rank starts."""
    agent = tmp_path / "silent-ssh"
    agent.write_text("#!/bin/sh\nexec sleep 600\n")
    agent.chmod(0o755)
    (tmp_path / "hosts").write_text("localhost slots=1\n10.254.254.254 slots=1  # nobody\n")
    t0 = time.monotonic()
    res = run_with_timeout([str(WRAPPER), "--hostfile", str(tmp_path / "hosts"), "--host-timeout", "2",
                            "--mca", "plm_rsh_agent", str(agent), "--", "true"], timeout=60)
    took = time.monotonic() - t0
    assert res.returncode == 2 and took < 20, (res.stdout, took)
    assert res.stdout.startswith(f"dsgd-mpirun: error: host 10.254.254.254 (hostfile {tmp_path / 'hosts'} line 2) "
                                 f"did not answer within 2s")
    assert res.stdout.count("\n") == 1


def test_ctrl_c_in_a_terminal_checkpoints_every_rank_and_prints_the_stop_line(tmp_path):
    """A terminal sends SIGINT to the launcher's whole process group; mpirun, in a group of its own,
    gets SIGUSR1 from the launcher instead, so the ranks checkpoint and rank 0's line gets out."""
    out = tmp_path / "run"
    proc = subprocess.Popen([str(WRAPPER), "-np", "2", "--oversubscribe", "--", "python", "-m", "dsgd.train",
                             "--model", "mlp", "--norm", "none", "--steps-per-epoch", "400", "--epochs", "1",
                             "--checkpoint-every", "1", "--eval-every", "1000", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=launch_env(),
                            cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "latest.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the foreground group, not one process
        text, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    step = json.loads((out / "checkpoints" / "latest.json").read_text())["step"]
    assert proc.returncode == 4, text[-3000:]
    assert "dsgd-mpirun: SIGINT: every rank checkpoints its step and stops" in text
    assert f"dsgd.train: stopped by SIGUSR1 at step {step}; checkpoint {out}/checkpoints/step-{step:08d} " \
           f"(resume with --resume {out})" in text
    assert 0 < step < 400


ALLREDUCE = """
from mpi4py import MPI
comm = MPI.COMM_WORLD
total = comm.allreduce(comm.rank + 1)
assert total == comm.size * (comm.size + 1) // 2, total
if comm.rank == 0:
    print(f"allreduce ok {comm.size} {total}", flush=True)
"""

FAIL_ON_RANK_1 = """
from mpi4py import MPI
comm = MPI.COMM_WORLD
if comm.rank == 1:
    raise RuntimeError("deliberate failure on rank 1")
comm.barrier()   # the other ranks would wait here forever without mpi4py's abort
"""


def test_real_run_allreduce():
    res = run_with_timeout([str(WRAPPER), "-np", "3", "--oversubscribe", "--", "python", "-c", ALLREDUCE],
                           timeout=60)
    assert res.returncode == 0, res.stdout[-4000:]
    assert "allreduce ok 3 6" in res.stdout


def test_one_failing_rank_aborts_the_job():
    t0 = time.monotonic()
    command = [str(WRAPPER), "-np", "3", "--oversubscribe", "--", "python", "-c", FAIL_ON_RANK_1]
    res = run_with_timeout(command, timeout=60)
    assert res.returncode != 0
    assert "deliberate failure on rank 1" in res.stdout
    assert time.monotonic() - t0 < 30

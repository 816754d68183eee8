"""Faults end the job promptly with a clear message, and never cost the latest good checkpoint."""
import json
import os
import signal
import subprocess
import sys
import time

import torch

import mpi_harness
from dsgd import launcher
from trainer import FAST, latest_step, train, train_here, worker_params


def test_a_stalled_neighbour_is_reported_by_name():
    t0 = time.monotonic()
    res = mpi_harness.run(4, [mpi_harness.program("stalled_neighbour.py")], timeout=60,
                          env={"DSGD_COMM_TIMEOUT": "2"})
    assert res.returncode != 0
    assert "rank 0 waited more than 2s on: receive from rank 1" in res.stdout
    assert time.monotonic() - t0 < 50  # start-up and the 2 s timeout, not the 600 s rank 1 sleeps


def _rank_pid(out, rank):
    log = out / "logs" / f"rank{rank}.log"
    for line in log.read_text().splitlines():
        if f"rank {rank} pid " in line:
            return int(line.split(" pid ")[1].split()[0])
    raise AssertionError(f"no pid in {log}")


def test_kill_9_of_one_rank_ends_the_job_and_the_run_resumes_exactly(tmp_path):
    # 2 ranks of 2 workers: the killed rank takes two workers' state with it
    flags = [*FAST, "--model", "mlp", "--algorithm", "dsgd", "--topology", "ring", "--steps-per-epoch", "40",
             "--eval-every", "40", "--checkpoint-every", "4", "--keep-checkpoints", "2", "--eval-samples", "500"]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    cmd = launcher.mpirun_command(2, ["-m", "dsgd.train", *flags, "--workers-per-rank", "2", "--out", str(killed)])
    proc = subprocess.Popen(cmd, env=launcher.mpirun_env(), cwd=launcher.REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not ((killed / "checkpoints" / "latest.json").exists() and latest_step(killed) >= 8):
            assert proc.poll() is None and time.monotonic() < deadline, "run ended before it could be killed"
            time.sleep(0.2)
        os.kill(_rank_pid(killed, 1), signal.SIGKILL)
        t_kill = time.monotonic()
        proc.wait(timeout=60)
        assert time.monotonic() - t_kill < 60
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    stopped_at = latest_step(killed)
    assert 8 <= stopped_at < 40
    json.loads((killed / "checkpoints" / "latest.json").read_text())  # the manifest is whole
    train(2, killed, "--resume", str(killed))
    train_here(4, whole, *flags[len(FAST):])  # the same 4 workers in this process: bit for bit the 2 x 2 ranks
    assert torch.equal(worker_params(killed), worker_params(whole))


def test_a_stopped_rank_ends_the_job_within_the_comm_timeout_naming_it(tmp_path):
    """SIGSTOP to one rank of a ring: its neighbours wait in the exchange, the others in the per-step
    agreement; every collective and exchange has the timeout, so the job ends, and the roll call of
    the ranks still answering names the one that stopped, once for the job."""
    out = tmp_path / "run"
    flags = [*FAST, "--model", "mlp", "--algorithm", "dsgd", "--topology", "ring", "--steps-per-epoch", "400",
             "--epochs", "100", "--eval-every", "100000", "--checkpoint-every", "20", "--comm-timeout", "5", "--out", str(out)]
    proc = subprocess.Popen(launcher.mpirun_command(4, ["-m", "dsgd.train", *flags]), cwd=launcher.REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    stopped = None
    try:
        deadline = time.monotonic() + 120
        while not ((out / "checkpoints" / "latest.json").exists() and latest_step(out) >= 20):
            assert proc.poll() is None and time.monotonic() < deadline, "run ended before a rank could be stopped"
            time.sleep(0.2)
        stopped = _rank_pid(out, 2)
        os.kill(stopped, signal.SIGSTOP)
        t_stop = time.monotonic()
        output, _ = proc.communicate(timeout=60)
        took = time.monotonic() - t_stop
    finally:
        if stopped is not None:
            try:
                os.kill(stopped, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    assert took < 5 + 3 + 2 + 10, took  # the timeout, the roll call, the abort, and slack for a busy machine
    errors = [line for line in output.splitlines() if line.startswith("dsgd.train: error:")]
    assert len(errors) == 1, output[-3000:]
    assert "waited more than 5s on:" in errors[0] and errors[0].split("; ")[1] == "rank 2 did not answer", errors[0]
    assert "the last good checkpoint is" in errors[0]

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
    assert time.monotonic() - t0 < 25  # not the 30 s rank 1 sleeps


def _rank_pid(out, rank):
    log = out / "logs" / f"rank{rank}.log"
    for line in log.read_text().splitlines():
        if f"rank {rank} pid " in line:
            return int(line.split(" pid ")[1].split()[0])
    raise AssertionError(f"no pid in {log}")


def test_kill_9_of_one_rank_ends_the_job_and_the_run_resumes_exactly(tmp_path):
    flags = [*FAST, "--algorithm", "dsgd", "--topology", "ring", "--steps-per-epoch", "40", "--eval-every", "40",
             "--checkpoint-every", "4", "--keep-checkpoints", "2", "--eval-samples", "500"]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    cmd = launcher.mpirun_command(4, ["-m", "dsgd.train", *flags, "--out", str(killed)])
    proc = subprocess.Popen(cmd, env=launcher.mpirun_env(), cwd=launcher.REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not ((killed / "checkpoints" / "latest.json").exists() and latest_step(killed) >= 8):
            assert proc.poll() is None and time.monotonic() < deadline, "run ended before it could be killed"
            time.sleep(0.2)
        os.kill(_rank_pid(killed, 2), signal.SIGKILL)
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
    train(4, killed, "--resume", str(killed))
    train_here(4, whole, *flags[len(FAST):])  # the same 4 workers in this process: bit for bit the 4 ranks
    assert torch.equal(worker_params(killed), worker_params(whole))

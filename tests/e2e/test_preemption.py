"""A signal (Slurm's time limit, preemption, scancel) costs no work: every rank checkpoints the step,
the job exits with status 4 and one line naming the checkpoint, and the run resumes bit for bit."""
import os
import signal
import subprocess
import sys
import time

import torch

import mpi_harness
from dsgd import launcher
from trainer import FAST, TINY, latest_step, train, worker_params

STEPS = 2000  # long enough that the signal lands mid-run on an idle machine too
FLAGS = [*FAST, *TINY, "--algorithm", "dsgd", "--topology", "ring", "--momentum", "0.9", "--steps-per-epoch", "400",
         "--epochs", "5", "--eval-every", str(STEPS), "--eval-samples", "500", "--log-every", "100000"]


def rank_pid(out, rank):
    for line in (out / "logs" / f"rank{rank}.log").read_text().splitlines():
        if f"rank {rank} pid " in line:
            return int(line.split(" pid ")[1].split()[0])
    raise AssertionError("no pid logged")


def test_sigterm_to_one_rank_checkpoints_that_step_and_resume_auto_continues_exactly(tmp_path):
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    # a plain mpirun, as Slurm users start it: no `python -m mpi4py`
    cmd = ["mpirun", "-np", "4", "--oversubscribe", "--bind-to", "none", sys.executable, "-m", "dsgd.train", *FLAGS,
           "--out", str(stopped), "--resume", "auto"]
    proc = subprocess.Popen(cmd, env=launcher.mpirun_env(), cwd=launcher.REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (stopped / "checkpoints" / "latest.json").exists():  # step 0 is saved before training
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.1)
        time.sleep(0.5)
        os.kill(rank_pid(stopped, 2), signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    step = latest_step(stopped)
    assert proc.returncode == 4, out[-3000:]
    assert 0 < step < STEPS, step
    lines = [line for line in out.splitlines() if line.startswith("dsgd.train:")]
    assert lines == [f"dsgd.train: stopped by SIGTERM at step {step}; checkpoint {stopped}/checkpoints/"
                     f"step-{step:08d} (resume with --resume {stopped})"], out[-3000:]
    # requeued: the same command line continues from that checkpoint
    mpi_harness.run_ok(4, ["-m", "dsgd.train", *FLAGS, "--out", str(stopped), "--resume", "auto"], timeout=300)
    train(4, whole, *FLAGS)  # FAST again after FLAGS' own copy: the same settings
    assert torch.equal(worker_params(stopped), worker_params(whole))


def test_resume_auto_refuses_a_run_directory_with_other_settings(tmp_path):
    train(2, tmp_path, *TINY, "--algorithm", "local", "--local-steps", "2", "--steps-per-epoch", "4",
          "--eval-every", "4")
    res = mpi_harness.run(2, ["-m", "dsgd.train", "--out", str(tmp_path), "--resume", "auto", "--seed", "7"],
                          timeout=120)
    assert res.returncode == 2
    assert "cannot resume: the checkpoint has seed=0, this run has seed=7" in res.stdout

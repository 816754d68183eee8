"""A signal (Slurm's time limit, preemption, scancel) costs no work: every rank checkpoints the step,
the job exits with status 4 and one line naming the checkpoint, and the run resumes bit for bit."""
import json
import os
import signal
import subprocess
import sys
import time

import torch

import mpi_harness
from dsgd import launcher
from trainer import FAST, TINY, latest_step, train_here, worker_params

# The signal goes out within about 10 ms of the step-0 checkpoint, when every rank has its handler;
# 300 steps of 2 ranks take far longer even on a fast idle machine (one MLP step alone is about 0.6 ms).
STEPS = 300
FLAGS = [*FAST, *TINY, "--algorithm", "dsgd", "--topology", "ring", "--momentum", "0.9", "--steps-per-epoch", "60",
         "--epochs", "5", "--eval-every", str(STEPS), "--eval-samples", "500", "--log-every", "100000"]


TWO_PER_RANK = ["--workers-per-rank", "2"]  # 2 ranks x 2 workers: a ring of 4


def rank_pid(out, rank):
    for line in (out / "logs" / f"rank{rank}.log").read_text().splitlines():
        if f"rank {rank} pid " in line:
            return int(line.split(" pid ")[1].split()[0])
    raise AssertionError("no pid logged")


def test_sigterm_to_one_rank_checkpoints_that_step_and_resume_auto_continues_exactly(tmp_path):
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    # a plain mpirun, as Slurm users start it: no `python -m mpi4py`
    cmd = ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", sys.executable, "-m", "dsgd.train", *FLAGS,
           *TWO_PER_RANK, "--out", str(stopped), "--resume", "auto"]
    proc = subprocess.Popen(cmd, env=launcher.mpirun_env(), cwd=launcher.REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (stopped / "checkpoints" / "latest.json").exists():  # step 0 is saved before training
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.01)
        os.kill(rank_pid(stopped, 1), signal.SIGTERM)
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
    mpi_harness.run_ok(2, ["-m", "dsgd.train", *FLAGS, *TWO_PER_RANK, "--out", str(stopped), "--resume", "auto"],
                       timeout=300)
    train_here(4, whole, *FLAGS)  # the same 4 workers in this process (FAST again after FLAGS' own copy)
    assert torch.equal(worker_params(stopped), worker_params(whole))


def test_sigusr1_to_mpirun_stops_every_rank_at_one_checkpointed_step(tmp_path):
    """Signalling the launcher: Open MPI's mpirun forwards SIGUSR1 to every rank. (SIGTERM to mpirun
    itself ends the job about a second later, before the ranks reach a step boundary: send SIGUSR1
    to mpirun, or SIGTERM to the ranks, as srun and scancel do.)"""
    stopped = tmp_path / "stopped"
    line = launcher.mpirun_command(2, ["-m", "dsgd.train", *FLAGS, *TWO_PER_RANK, "--out", str(stopped)],
                                   oversubscribe=True)
    proc = subprocess.Popen(line,
                            cwd=launcher.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (stopped / "checkpoints" / "latest.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.01)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGUSR1)
        out, _ = proc.communicate(timeout=120)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    step = latest_step(stopped)
    assert proc.returncode == 4, out[-3000:]
    assert 0 < step < STEPS and took < 60, (step, took)
    assert f"dsgd.train: stopped by SIGUSR1 at step {step}; checkpoint {stopped}/checkpoints/step-{step:08d}" in out
    for rank in range(2):  # every rank wrote its part of that checkpoint
        assert (stopped / "checkpoints" / f"step-{step:08d}" / f"rank{rank}.pt").is_file()
    mpi_harness.run_ok(2, ["-m", "dsgd.train", "--out", str(stopped), "--resume", "auto"], timeout=300)
    assert latest_step(stopped) == STEPS


def test_resume_auto_refuses_a_run_directory_with_other_settings(tmp_path):
    # decided from the checkpoint and the flags before any step, the same on every rank: one process shows it
    train_here(2, tmp_path, *TINY, "--algorithm", "local", "--local-steps", "2", "--steps-per-epoch", "4",
               "--eval-every", "4")
    res = train_here(2, tmp_path, "--out", str(tmp_path), "--resume", "auto", "--seed", "7", ok=False)
    assert res.returncode == 2
    assert "cannot resume: the checkpoint has seed=0, this run has seed=7" in res.stdout


def test_a_second_signal_while_the_stop_checkpoint_is_written_exits_at_once_and_keeps_the_last_one(tmp_path):
    """The first signal reaches one rank, the second every rank while rank 0 is naming the stop
    checkpoint (every rank file written, the manifest not yet). A FIFO in place of the manifest's
    temporary file holds rank 0 there, since opening a FIFO to write waits for a reader; rank 0
    received no signal of its own before, so the agreed stop must count as its first."""
    out, ckpts = tmp_path / "run", tmp_path / "run" / "checkpoints"
    flags = [*FAST, *TINY, "--algorithm", "dsgd", "--topology", "complete", "--steps-per-epoch", "200",
             "--epochs", "3", "--checkpoint-every", "200", "--eval-every", "600", "--eval-samples", "500",
             "--log-every", "100000", "--out", str(out)]
    cmd = ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", sys.executable, "-m", "dsgd.train", *flags]
    proc = subprocess.Popen(cmd, env=launcher.mpirun_env(), cwd=launcher.REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def wait_for(done, what):
        deadline = time.monotonic() + 120
        while not done():
            assert proc.poll() is None, f"exited with {proc.returncode} before {what}:\n{proc.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} in 120 s"
            time.sleep(0.02)

    def stop_checkpoint_files():  # every rank's file written: both ranks are inside the stop checkpoint
        return [d for d in ckpts.glob("step-*") if int(d.name[5:]) > 200
                and all((d / f"rank{r}.pt").exists() for r in range(2))]

    try:
        wait_for(lambda: (ckpts / "latest.json").exists() and latest_step(out) == 200, "checkpoint at step 200")
        pids = [rank_pid(out, r) for r in range(2)]
        manifest_tmp = ckpts / f"latest.json.{pids[0]}.tmp"  # rank 0's temporary file for latest.json
        os.mkfifo(manifest_tmp)  # the next manifest write (the stop's) waits on it
        os.kill(pids[1], signal.SIGTERM)
        wait_for(stop_checkpoint_files, "stop checkpoint's rank files")
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=60)  # without the exit at once, rank 0 waits on the FIFO forever
        except subprocess.TimeoutExpired:
            raise AssertionError("the second signal did not end the job") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 5, output[-3000:]  # preempt.STOPPED_HARD, passed on by mpirun
    [stopped_at] = stop_checkpoint_files()
    assert int(stopped_at.name[5:]) < 600  # a stop mid-run, not the final checkpoint
    # the manifest still names the previous complete checkpoint, and each of its files loads as plain tensors
    manifest = json.loads((ckpts / "latest.json").read_text())
    assert (manifest["step"], manifest["dir"], manifest["world_size"]) == (200, "step-00000200", 2)
    for rank in range(2):
        state = torch.load(ckpts / manifest["dir"] / f"rank{rank}.pt", weights_only=True)
        assert (state["step"], state["rank"]) == (200, rank)
    # what the interrupted write leaves behind: a torn temporary file beside the manifest
    manifest_tmp.unlink()
    manifest_tmp.write_text('{"format": "dsgd-che')
    resumed = mpi_harness.run_ok(2, ["-m", "dsgd.train", *flags, "--resume", "auto"], timeout=120)
    assert latest_step(out) == 600, resumed[-3000:]
    assert f"resumed from {ckpts / 'step-00000200'} at step 200" in (out / "logs" / "rank0.log").read_text()

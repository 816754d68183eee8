"""A failure on one rank is known to every rank at once: the job ends, one message, nothing hangs.

Started as a user would without `python -m mpi4py` (a plain `mpirun python ...` or the console
script), where an exiting rank would otherwise leave the others waiting forever.
"""
import os
import signal
import subprocess
import sys

import mpi_harness
from dsgd import launcher

PROGRAM = mpi_harness.program("fail_during_training.py")


def run_without_mpi4py_runner(np_, args, timeout=120):
    cmd = ["mpirun", "-np", str(np_), "--oversubscribe", "--bind-to", "none", sys.executable, PROGRAM, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=launcher.mpirun_env(), cwd=launcher.REPO, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"the job hung: {proc.communicate()[0][-3000:]}") from None
    return proc.returncode, out


def test_nan_on_one_rank_stops_every_rank_at_that_step_with_one_message(tmp_path):
    status, out = run_without_mpi4py_runner(3, ["--mode", "nan", "--out", str(tmp_path)])
    errors = [line for line in out.splitlines() if line.startswith("dsgd.train: error:")]
    assert status == 3, out[-3000:]
    assert len(errors) == 1, out[-3000:]  # rank 0 speaks for the job
    assert "loss is not finite at step 3 on rank 2" in errors[0]
    assert "the last good checkpoint is" in errors[0]
    for r in range(3):  # every rank stopped at the same step, and says so in its own log
        assert "stopped: loss is not finite at step 3 on rank 2" in (tmp_path / "logs" / f"rank{r}.log").read_text()


def test_an_unexpected_error_on_one_rank_aborts_the_job(tmp_path):
    status, out = run_without_mpi4py_runner(3, ["--mode", "raise", "--out", str(tmp_path)])
    assert status != 0
    assert "internal error on rank 1" in out and "deliberate failure inside training on rank 1" in out


def test_a_settings_error_is_printed_once_for_the_whole_job():
    cmd = ["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", sys.executable, "-m", "dsgd.train",
           "--lr", "-1"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=launcher.mpirun_env(), cwd=launcher.REPO,
                         timeout=120)
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("dsgd.train:")]
    assert lines == ["dsgd.train: error: --lr must be > 0, got -1.0"], res.stdout + res.stderr
    assert res.returncode == 2

"""One job per run directory: rank 0 holds an exclusive flock on RUN/.dsgd-lock for the whole job.

The other job is simulated in this process by a second open file of the lock (flock locks belong
to the open file, so it conflicts with the trainer's own), and once for real: two `python -m
dsgd.train` processes into one --out.
"""
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dsgd.train import rundir
from trainer import TINY, train_here

SHORT = [*TINY, "--steps-per-epoch", "4", "--eval-every", "2", "--eval-samples", "100"]
REPO = Path(__file__).resolve().parents[2]


def files(out):
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


def error_lines(text):
    lines = [line for line in text.splitlines() if line.startswith("dsgd.train: error: ")]
    assert "Traceback" not in text, text[-3000:]
    return lines


class OtherJob:
    """Holds the lock of `out` the way a running job does, from another open file of this process."""

    def __init__(self, out, pid=4321, host="node7", since="2026-12-02T22:40:01"):
        out.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(out / rundir.LOCK, os.O_RDWR | os.O_CREAT)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(self.fd, json.dumps({"pid": pid, "host": host, "since": since, "command": "x"}).encode())

    def end(self):
        os.close(self.fd)


def lockable(out) -> bool:
    """Whether a new job could lock `out` now."""
    path = out / rundir.LOCK
    if not path.exists():
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.fixture
def finished(tmp_path):
    out = tmp_path / "run"
    train_here(1, out, *SHORT, "--checkpoint-every", "2")
    return out


REFUSED = {"new run": lambda out: [*SHORT, "--lr", "0.3"],
           "overwrite": lambda out: [*SHORT, "--lr", "0.3", "--overwrite", "true"],
           "resume": lambda out: ["--resume", str(out), "--epochs", "2"],
           "resume auto": lambda out: [*SHORT, "--resume", "auto", "--out", str(out), "--epochs", "2"]}


@pytest.mark.parametrize("how", list(REFUSED))
def test_a_second_job_into_a_locked_directory_is_refused_and_touches_nothing(finished, how):
    other = OtherJob(finished)
    before = files(finished)
    try:
        res = train_here(1, finished, *REFUSED[how](finished), ok=False)
    finally:
        assert not lockable(finished)  # the refused job did not take or drop the other job's lock
        other.end()
    assert res.returncode == 2, res.stdout[-3000:]
    assert error_lines(res.stdout) == [
        f"dsgd.train: error: {finished} is in use by another job (pid 4321 on host node7, since "
        f"2026-12-02T22:40:01): wait for it to end, or give another --out"]
    assert files(finished) == before


def test_a_locked_empty_directory_refuses_a_new_run_too(tmp_path):
    out = tmp_path / "run"
    other = OtherJob(out)
    try:
        res = train_here(1, out, *SHORT, ok=False)
    finally:
        other.end()
    assert res.returncode == 2 and "is in use by another job" in error_lines(res.stdout)[0]
    assert sorted(p.name for p in out.iterdir()) == [rundir.LOCK]


def test_the_lock_is_let_go_when_the_command_ends_however_it_ends(tmp_path, monkeypatch):
    out = tmp_path / "run"
    train_here(1, out, *SHORT)  # finished
    assert lockable(out) and not (out / rundir.LOCK).exists()
    res = train_here(1, out, *SHORT, ok=False)  # refused: holds a run
    assert res.returncode == 2 and lockable(out)
    from dsgd.train import loop
    held = []

    def broken(self):
        held.append(not lockable(out))
        raise RuntimeError("a bug in training")

    monkeypatch.setattr(loop.Run, "run", broken)
    res = train_here(1, out, "--resume", str(out), "--epochs", "2", ok=False)
    assert res.returncode == 1 and "internal error" in res.stdout
    assert held == [True]  # the lock was held while the run trained
    assert lockable(out) and not (out / rundir.LOCK).exists() and rundir._held == []


def test_the_lock_file_names_its_holder_and_is_not_part_of_the_run(tmp_path):
    out = tmp_path / "run"
    with rundir.RunDirLock(out) as lock:
        holder = json.loads((out / rundir.LOCK).read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
        assert time.strptime(holder["since"], "%Y-%m-%dT%H:%M:%S") and holder["command"]
        assert rundir.holds_run(out) == []
        (out / "config.yaml").write_text("run: {}\n")
        assert rundir.clear(out) == ["config.yaml"]
        (out / "config.yaml").write_text("run: {}\n")
        claim = rundir.Claim(out, overwrite=True, resume_dir=None, auto_fresh=False)
        claim.commit()
        assert sorted(p.name for p in out.iterdir()) == [rundir.LOCK]  # --overwrite left the lock alone
        assert lock in rundir._held and not lockable(out)
    assert rundir._held == [] and list(out.iterdir()) == []


def test_a_lock_whose_holder_was_killed_is_free_again(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from dsgd.train.rundir import RunDirLock; "
                               "RunDirLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(600)",
                               str(out)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(rundir.RunDirError, match=f"pid {holder.pid} on host {socket.gethostname()}"):
            rundir.RunDirLock(out).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (out / rundir.LOCK).exists()  # kill -9 leaves the file, but not the lock
    with rundir.RunDirLock(out):
        assert json.loads((out / rundir.LOCK).read_text())["pid"] == os.getpid()


def test_two_trainer_processes_into_one_directory_the_second_is_refused(tmp_path):
    """The fault as found: two jobs with different --lr started into one --out."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dsgd.train", *TINY, "--threads", "1", "--eval-every", "100000",
               "--eval-samples", "100", "--out", str(out)]
    first = subprocess.Popen([*command, "--steps-per-epoch", "1500", "--epochs", "50", "--lr", "0.05"], cwd=REPO,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "config.yaml").exists():  # written once the first job has started training
            assert first.poll() is None, first.stderr.read()
            assert time.time() < deadline, "the first job did not start within 120 s"
            time.sleep(0.2)
        second = subprocess.run([*command, "--steps-per-epoch", "4", "--lr", "0.3"], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first job ended before the second was tried"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert second.returncode == 2, second.stderr[-3000:]
    lines = error_lines(second.stderr)
    assert len(lines) == 1 and lines[0].startswith(
        f"dsgd.train: error: {out} is in use by another job (pid {first.pid} on host {socket.gethostname()}, since ")
    assert lines[0].endswith("): wait for it to end, or give another --out")
    assert yaml.safe_load((out / "config.yaml").read_text())["optim"]["lr"] == 0.05

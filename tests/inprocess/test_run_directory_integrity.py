"""What a crash or a signal at a bad moment leaves in a run directory, and what the next start makes
of it: an --overwrite start interrupted before it trained puts the old run back (now, or at the
next start when it was killed outright); config.yaml and metrics.jsonl are never left half
written, and a metrics row torn by a crash is dropped on resume, with one line each time."""
import json
import os
import signal
import time

import pytest
import yaml

from dsgd.train import rundir
from dsgd.train.metrics import RunLog
from trainer import TINY, latest_step, metrics, train_here

SHORT = [*TINY, "--steps-per-epoch", "4", "--eval-every", "2", "--eval-samples", "100"]


def files(out):
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


def lines(text, prefix="dsgd.train: "):
    assert "Traceback" not in text, text[-3000:]
    return [line for line in text.splitlines() if line.startswith(prefix)]


@pytest.fixture
def finished(tmp_path):
    """A finished run of 4 steps: checkpoints at 0, 2, 4 and metrics rows at 2, 4."""
    out = tmp_path / "run"
    train_here(2, out, *SHORT, "--checkpoint-every", "2")
    return out


def interrupt_when_the_run_is_built(monkeypatch, interrupt):
    """Stop the start once the new run has written its first files (logs, an empty metrics.jsonl)."""
    from dsgd.train import loop
    build = loop.Run.__init__

    def built_then_interrupted(self, *args, **kwargs):
        build(self, *args, **kwargs)
        interrupt()

    monkeypatch.setattr(loop.Run, "__init__", built_then_interrupted)


def ctrl_c():
    raise KeyboardInterrupt


def sigterm():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)  # the handler interrupts this at once


@pytest.mark.parametrize("interrupt, name", [(ctrl_c, "SIGINT"), (sigterm, "SIGTERM")])
def test_an_overwrite_start_interrupted_before_it_trains_puts_the_old_run_back(finished, monkeypatch, interrupt,
                                                                             name):
    before, handler = files(finished), signal.getsignal(signal.SIGTERM)
    interrupt_when_the_run_is_built(monkeypatch, interrupt)
    res = train_here(2, finished, *SHORT, "--lr", "0.3", "--overwrite", "true", ok=False)
    assert res.returncode == 4, res.stdout[-3000:]
    assert lines(res.stdout) == [f"dsgd.train: stopped by {name} while starting, before any training step: put "
                                 f"back the earlier run in {finished}"]
    assert files(finished) == before
    assert signal.getsignal(signal.SIGTERM) == handler  # the start's handlers went with it


def test_a_sigterm_while_the_old_run_is_being_moved_aside_waits_for_the_move_then_puts_it_back(finished,
                                                                                               monkeypatch):
    before, real, calls = files(finished), type(finished).rename, []

    def rename_then_sigterm(self, target):
        calls.append(self)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # recorded here, raised once the move is whole
        return real(self, target)

    monkeypatch.setattr(type(finished), "rename", rename_then_sigterm)
    res = train_here(2, finished, *SHORT, "--overwrite", "true", ok=False)
    assert res.returncode == 4, res.stdout[-3000:]
    assert lines(res.stdout) == [f"dsgd.train: stopped by SIGTERM while starting, before any training step: put "
                                 f"back the earlier run in {finished}"]
    assert len(calls) > 2 and files(finished) == before


def test_a_stop_signal_inside_a_step_that_must_not_be_cut_in_two_is_raised_once_it_is_done():
    done = []
    with pytest.raises(rundir.StartInterrupted) as info:
        with rundir.interruptible_start([signal.SIGTERM]):
            with rundir.uninterrupted():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler runs here, and only takes note
                done.append("the step")
            done.append("what follows")
    assert done == ["the step"] and info.value.signum == signal.SIGTERM


def test_a_start_killed_with_the_old_run_aside_has_it_put_back_by_the_next_start(finished):
    before = files(finished)
    rundir.Claim(finished, overwrite=True, resume_dir=None, auto_fresh=False)  # moved aside, then "kill -9":
    (finished / "logs").mkdir()
    (finished / "logs" / "rank0.log").write_text("the killed start's log\n")  # its files, never committed
    (finished / "metrics.jsonl").write_text("")
    assert rundir.holds_run(finished) == ["metrics.jsonl", "logs/"]
    res = train_here(2, finished, *SHORT, ok=False)
    assert res.returncode == 2
    assert lines(res.stdout) == [
        f"dsgd.train: put back the earlier run in {finished} (config.yaml, metrics.jsonl, checkpoints/, logs/, "
        f"tensorboard/) that an --overwrite start, stopped before it trained, had left in "
        f"{finished / rundir.ASIDE}",
        f"dsgd.train: error: {finished} already holds a run (config.yaml, metrics.jsonl, checkpoints/, logs/, "
        f"tensorboard/): continue it with --resume {finished}, replace it with --overwrite true, or give another --out"]
    assert files(finished) == before
    train_here(2, finished, "--resume", str(finished), "--epochs", "2")
    assert [m["step"] for m in metrics(finished)] == [2, 4, 6, 8]


def test_a_start_killed_while_moving_the_old_run_aside_loses_none_of_it(finished):
    before = files(finished)
    aside = finished / rundir.ASIDE
    aside.mkdir()
    (finished / "config.yaml").rename(aside / "config.yaml")  # killed after its first move
    (aside / "checkpoints").mkdir()
    (finished / "checkpoints" / "step-00000000").rename(aside / "checkpoints" / "step-00000000")
    res = train_here(2, finished, *SHORT, "--overwrite", "true", "--data-dir", "/nowhere", ok=False)
    assert res.returncode == 2
    said = lines(res.stdout)
    assert len(said) == 2 and said[0].startswith(f"dsgd.train: put back the earlier run in {finished} (config.yaml, ")
    assert said[1].startswith("dsgd.train: error: ") and "/nowhere" in said[1]  # then the start failed as usual
    assert files(finished) == before


def test_a_requeued_resume_auto_after_a_killed_overwrite_start_continues_the_old_run(finished):
    rundir.Claim(finished, overwrite=True, resume_dir=None, auto_fresh=False)  # then killed outright
    flags = [*SHORT, "--resume", "auto", "--out", str(finished), "--epochs", "2"]
    res = train_here(2, finished, *flags, ok=False)  # it read --out with the old run aside: no checkpoint
    assert res.returncode == 2
    said = lines(res.stdout)
    assert len(said) == 2 and said[0].startswith(f"dsgd.train: put back the earlier run in {finished}")
    assert said[1] == (f"dsgd.train: error: {finished} holds a checkpoint now that it did not hold when this job "
                       f"read its settings (another job ended there, or a run was put back): start the job again, "
                       f"and --resume auto continues that run")
    train_here(2, finished, *flags)  # the requeue's next try
    assert [m["step"] for m in metrics(finished)] == [2, 4, 6, 8] and latest_step(finished) == 8


def test_a_committed_replacement_cut_short_while_deleting_the_old_run_is_finished_quietly(finished):
    claim = rundir.Claim(finished, overwrite=True, resume_dir=None, auto_fresh=False)
    os.rename(finished / rundir.ASIDE, finished / rundir.DISCARDED)  # commit's first step, then killed
    claim.replaced = False
    assert rundir.recover(finished) is None
    assert not (finished / rundir.DISCARDED).exists() and rundir.holds_run(finished) == []


# --- config.yaml ---------------------------------------------------------------------------------

def test_config_yaml_is_replaced_atomically(tmp_path, monkeypatch):
    rundir.write_settings(tmp_path, {"optim": {"lr": 0.1}}, None)

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        rundir.write_settings(tmp_path, {"optim": {"lr": 0.2}}, None)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == {"optim": {"lr": 0.1}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # no temporary file left


def test_a_resume_with_an_emptied_config_yaml_is_refused_in_one_line(finished):
    (finished / "config.yaml").write_text("")
    before = files(finished)
    res = train_here(2, finished, "--resume", str(finished), "--epochs", "2", ok=False)
    assert res.returncode == 2
    assert lines(res.stdout) == [f"dsgd.train: error: cannot resume: {finished / 'config.yaml'} is empty, so the "
                                 f"run's settings are unknown; restore it, or start a new run"]
    assert files(finished) == before


@pytest.mark.parametrize("text, what", [("optim: {lr: [0.1\n", "damaged (not valid YAML"),
                                        ("- 1\n", "damaged (not a mapping of settings)"),
                                        ("", "empty")])
def test_read_settings_names_what_is_wrong_with_config_yaml(tmp_path, text, what):
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(rundir.RunDirError) as info:
        rundir.read_settings(tmp_path)
    assert str(info.value).startswith(f"cannot resume: {tmp_path / 'config.yaml'} is {what}")


def test_a_resume_with_an_unparsable_config_yaml_is_refused_in_one_line(finished):
    (finished / "config.yaml").write_text("optim: {lr: [0.1\n")
    res = train_here(2, finished, "--resume", str(finished), "--epochs", "2", ok=False)
    assert res.returncode == 2 and len(lines(res.stdout, "dsgd.train: error: ")) == 1


# --- metrics.jsonl -------------------------------------------------------------------------------

@pytest.mark.parametrize("torn", ['{"step": 6, "test_a', '{"step": 6, "test_a\n'])
def test_a_metrics_row_torn_by_a_crash_is_dropped_on_resume_with_one_line(finished, torn):
    with open(finished / "metrics.jsonl", "a") as f:
        f.write(torn)
    out = train_here(2, finished, "--resume", str(finished), "--epochs", "2")
    dropped = [line for line in out.splitlines() if "dropped the last line" in line]
    assert len(dropped) == 1 and f"{finished / 'metrics.jsonl'}, torn by a crash" in dropped[0]
    assert [m["step"] for m in metrics(finished)] == [2, 4, 6, 8]
    assert (finished / "metrics.jsonl").read_text().endswith("}\n")


def test_a_damaged_metrics_row_before_the_last_is_refused_in_one_line(finished):
    text = (finished / "metrics.jsonl").read_text()
    (finished / "metrics.jsonl").write_text("garbage\n" + text)
    res = train_here(2, finished, "--resume", str(finished), "--epochs", "2", ok=False)
    assert res.returncode == 2
    assert lines(res.stdout) == [f"dsgd.train: error: cannot resume: line 1 of {finished / 'metrics.jsonl'} is not "
                                 f"a metrics row (the file is damaged): repair or remove that line"]


def test_a_resume_whose_metrics_file_was_deleted_says_the_rows_are_lost_and_starts_it_again(finished, tmp_path):
    (finished / "metrics.jsonl").unlink()
    out = train_here(2, finished, "--resume", str(finished), "--epochs", "2")
    said = [line for line in out.splitlines() if "was missing" in line]
    assert len(said) == 1 and said[0].endswith(f"{finished / 'metrics.jsonl'} was missing: the rows up to step 4 are "
                                               f"lost; the rows from here on start it again"), said
    assert [m["step"] for m in metrics(finished)] == [6, 8]
    # continued in another directory, the rows so far stay in the first one: nothing was lost, nothing is said
    other = train_here(2, tmp_path / "other", "--resume", str(finished / "checkpoints" / "step-00000006"), "--epochs",
                       "2", "--out", str(tmp_path / "other"))
    assert "was missing" not in other and [m["step"] for m in metrics(tmp_path / "other")] == [8]


def test_a_run_directory_entry_of_the_wrong_kind_is_named_in_one_line(finished, tmp_path):
    (finished / "metrics.jsonl").unlink()
    (finished / "metrics.jsonl").mkdir()
    res = train_here(2, finished, "--resume", str(finished), "--epochs", "2", ok=False)
    assert res.returncode == 2
    assert lines(res.stdout) == [f"dsgd.train: error: cannot use {finished / 'metrics.jsonl'}: Is a directory"]
    (tmp_path / "a-file").write_text("mine\n")
    res = train_here(2, tmp_path / "a-file", *SHORT, ok=False)
    assert res.returncode == 2 and (tmp_path / "a-file").read_text() == "mine\n"
    assert lines(res.stdout) == [f"dsgd.train: error: --out {tmp_path / 'a-file'} exists and is not a directory: give "
                                 f"a directory for the run"]


def test_metrics_rows_are_on_disk_as_soon_as_they_are_logged(tmp_path):
    log = RunLog(tmp_path, 0, tensorboard=False)
    log.metrics({"step": 2, "test_acc": 0.5})
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [
        {"step": 2, "test_acc": 0.5}]
    log.close()


# --- a full disk ---------------------------------------------------------------------------------

def test_a_full_disk_while_checkpointing_ends_the_run_in_one_line_and_the_last_checkpoint_resumes(tmp_path,
                                                                                                   monkeypatch):
    """The write fails inside torch.save (which wraps the OSError): no half-written file stays, the
    line names the file, and latest.json still names the checkpoint before it."""
    import errno

    from dsgd.train import checkpoint
    real_save = checkpoint.torch.save

    def full_after_two(obj, f):
        if isinstance(obj, dict) and obj.get("step") == 4:  # the third checkpoint (0, 2, 4)
            f.write(b"x" * 10)
            try:  # as torch's writer does: its file's OSError becomes the context of a RuntimeError
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                raise RuntimeError("unexpected pos") from None
        return real_save(obj, f)

    flags = [*TINY, "--algorithm", "local", "--steps-per-epoch", "6", "--checkpoint-every", "2", "--eval-every", "6"]
    monkeypatch.setattr(checkpoint.torch, "save", full_after_two)
    res = train_here(1, tmp_path, *flags, ok=False)
    assert res.returncode == 3
    ckpt = tmp_path / "checkpoints"
    assert lines(res.stdout)[-1] == (f"dsgd.train: error: rank 0: No space left on device while writing "
                                     f"{ckpt / 'step-00000004' / 'rank0.pt'}; the last good checkpoint is "
                                     f"{ckpt / 'step-00000002'} (resume with --resume {tmp_path}) once the cause "
                                     f"is fixed")
    assert not list(ckpt.rglob("*.tmp")) and latest_step(tmp_path) == 2
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    train_here(1, tmp_path, "--resume", str(tmp_path))
    assert latest_step(tmp_path) == 6

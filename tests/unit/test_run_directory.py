"""A run directory holds one run; a resume says what it does and records what it changed.

Tiny one-process runs (the MLP, a few steps) through the real entry point, in this process.
"""
import hashlib
import json
import time

import pytest
import torch
import yaml

from dsgd.train.cli import main
from dsgd.train.metrics import Meters

TINY = ["--model", "mlp", "--norm", "none", "--steps-per-epoch", "4", "--eval-every", "2", "--eval-samples", "100"]


def files(out):
    """Every file under `out` with its size and modification time: what a refused start must not touch."""
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


def rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("dsgd.train: error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


@pytest.fixture
def finished(tmp_path, capsys):
    """A finished run of 4 steps (checkpoints at 0, 2, 4) in tmp_path / "run"."""
    out = tmp_path / "run"
    assert main([*TINY, "--checkpoint-every", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def test_a_second_start_into_the_same_directory_is_refused_and_touches_nothing(finished, capsys):
    before = files(finished)
    assert main([*TINY, "--algorithm", "csgd", "--out", str(finished)]) == 2
    line = one_error(capsys)
    assert line == (f"dsgd.train: error: {finished} already holds a run (config.yaml, metrics.jsonl, checkpoints/, "
                    f"logs/, tensorboard/): continue it with --resume {finished}, replace it with --overwrite true, "
                    f"or give another --out")
    assert files(finished) == before


def test_overwrite_replaces_every_file_of_the_old_run_and_nothing_else(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--algorithm", "dsgd", "--workers-per-rank", "4", "--checkpoint-every", "1",
                 "--keep-checkpoints", "0", "--epochs", "2", "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine\n")
    assert main([*TINY, "--algorithm", "csgd", "--workers-per-rank", "2", "--steps-per-epoch", "2",
                 "--overwrite", "true", "--out", str(out)]) == 0
    assert f"--overwrite true: replaced the earlier run in {out}" in capsys.readouterr().err
    assert [r["step"] for r in rows(out)] == [2]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest.json", "step-00000000", "step-00000002"]
    assert yaml.safe_load((out / "config.yaml").read_text())["algo"]["algorithm"] == "csgd"
    assert (out / "logs" / "rank0.log").read_text().count(" pid ") == 1
    assert len(list((out / "tensorboard").iterdir())) == 1
    assert (out / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "config.yaml", "logs", "metrics.jsonl",
                                                     "notes.txt", "tensorboard"]  # nothing set aside is left


@pytest.mark.parametrize("bad, message", [(["--data-dir", "/nowhere"], "/nowhere"),
                                          (["--steps-per-epoch", "100000"], "steps-per-epoch 100000 needs")])
def test_an_overwrite_that_fails_to_start_keeps_the_old_run(finished, capsys, bad, message):
    before = files(finished)
    assert main([*TINY, "--overwrite", "true", *bad, "--out", str(finished)]) == 2
    assert message in one_error(capsys)
    assert files(finished) == before


def test_overwrite_and_resume_together_are_refused(finished, capsys):
    assert main(["--resume", str(finished), "--overwrite", "true"]) == 2
    assert one_error(capsys) == ("dsgd.train: error: --overwrite true starts a new run and --resume continues one: "
                                 "give one of them")


def test_resume_auto_starts_over_where_the_run_never_checkpointed(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("run:\n  seed: 3\n")
    (out / "metrics.jsonl").write_text('{"step": 7}\n')
    assert main([*TINY, "--resume", "auto", "--out", str(out)]) == 0
    assert "--resume auto found no checkpoint: replaced the earlier run" in capsys.readouterr().err
    assert [r["step"] for r in rows(out)] == [2, 4]


def test_continuing_into_a_directory_that_holds_another_run_is_refused(finished, tmp_path, capsys):
    other = tmp_path / "other"
    assert main([*TINY, "--out", str(other)]) == 0
    before = files(other)
    assert main(["--resume", str(finished), "--epochs", "2", "--out", str(other)]) == 2
    assert f"{other} already holds another run" in one_error(capsys)
    assert files(other) == before


def test_a_resume_with_nothing_left_to_do_says_so_and_changes_nothing(finished, capsys):
    before = files(finished)
    assert main(["--resume", str(finished), "--lr", "0.5"]) == 0
    out = capsys.readouterr().out
    assert ("dsgd.train: nothing to do: the run already reached step 4 of 4; give a larger --epochs to train longer"
            in out.splitlines())
    assert "final test accuracy" not in out
    after = files(finished)
    assert after.pop("logs/rank0.log") != before.pop("logs/rank0.log")  # it logs the attempt, nothing else
    assert after == before


def test_a_resume_shorter_than_the_checkpoint_is_refused(finished, capsys):
    before = files(finished)
    assert main(["--resume", str(finished), "--epochs", "0.5"]) == 2
    assert one_error(capsys) == ("dsgd.train: error: cannot resume: the checkpoint is at step 4, past the 2 steps of "
                                 "--epochs 0.5 (on --resume, --epochs is the new total length)")
    after = files(finished)
    after.pop("logs/rank0.log"), before.pop("logs/rank0.log")  # the rank log notes the attempt
    assert after == before


def test_resumes_record_what_they_change_and_config_holds_the_current_settings(finished, capsys):
    assert main(["--resume", str(finished), "--epochs", "2", "--lr", "0.1"]) == 0
    assert main(["--resume", str(finished), "--epochs", "3"]) == 0
    records = [json.loads(line) for line in (finished / "resumes.jsonl").read_text().splitlines()]
    assert [(r["step"], r["changed"], r["ranks"], r["workers_per_rank"]) for r in records] == [
        (4, {"lr": [0.05, 0.1], "epochs": [1.0, 2.0]}, 1, 1),
        (8, {"epochs": [2.0, 3.0]}, 1, 1)]  # lr 0.1 is kept: config.yaml holds the settings in force
    assert records[1]["checkpoint"] == str(finished / "checkpoints" / "step-00000008")
    saved = yaml.safe_load((finished / "config.yaml").read_text())
    assert (saved["optim"]["lr"], saved["run"]["epochs"]) == (0.1, 3.0)
    assert [r["step"] for r in rows(finished)] == [2, 4, 6, 8, 10, 12]


def record_in_manifest(path):
    """A checkpoint file edited on purpose: its manifest records the new bytes, as a save would (else
    the resume rightly refuses the file as damaged)."""
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][path.name] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                    "bytes": path.stat().st_size}
    manifest_path.write_text(json.dumps(manifest))


def test_wall_seconds_continue_from_the_checkpoint_across_a_resume(finished, capsys):
    path = finished / "checkpoints" / "step-00000002" / "rank0.pt"
    state = torch.load(path, weights_only=True)
    assert state["meters"]["wall_s"] >= rows(finished)[0]["wall_s"]  # saved after the row at step 2
    state["meters"]["wall_s"] = 1000.0  # as if the first segment had trained for 1000 s
    torch.save(state, path)
    record_in_manifest(path)
    assert main(["--resume", str(path.parent)]) == 0
    walls = [r["wall_s"] for r in rows(finished)]
    assert walls[0] < 1000.0 < walls[1] < 1000.0 + 60


def test_meters_without_wall_seconds_in_their_state_start_them_at_zero():
    m = Meters()
    m.load_state_dict({"compute_s": 1.5, "window": [1.0, 2.0, 3.0]})  # a checkpoint from before wall_s was kept
    assert m.elapsed() == 0.0
    m.start_clock()
    time.sleep(0.01)
    assert 0.01 <= m.state_dict()["wall_s"] < 5


def test_tensorboard_shows_each_step_once_after_a_resume_from_a_middle_checkpoint(finished, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    time.sleep(1.01 - time.time() % 1)  # event files sort by their second: the resumed one comes later
    assert main(["--resume", str(finished / "checkpoints" / "step-00000002")]) == 0
    assert [r["step"] for r in rows(finished)] == [2, 4]
    events = EventAccumulator(str(finished / "tensorboard"))
    events.Reload()
    assert len(list((finished / "tensorboard").iterdir())) == 2
    for tag in ("test_acc", "wall_s", "lr"):
        assert [e.step for e in events.Scalars(tag)] == [2, 4], tag
    redone = [e.value for e in events.Scalars("test_acc")]
    assert redone[1] == pytest.approx(rows(finished)[1]["test_acc"])


def test_a_replacement_that_cannot_move_the_old_run_aside_leaves_it_whole(tmp_path, monkeypatch):
    from pathlib import Path

    from dsgd.train.rundir import Claim
    for name in ("config.yaml", "metrics.jsonl", "logs/rank0.log", "checkpoints/latest.json",
                 "checkpoints/step-00000000/rank0.pt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    before = files(tmp_path)
    real, calls = Path.rename, []

    def fails_the_third_time(self, target):
        calls.append(self)
        if len(calls) == 3:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, target)

    monkeypatch.setattr(Path, "rename", fails_the_third_time)
    with pytest.raises(PermissionError):
        Claim(tmp_path, overwrite=True, resume_dir=None, auto_fresh=False)
    assert files(tmp_path) == before and not (tmp_path / Claim.ASIDE).exists()

"""A run whose latest.json is lost, or whose newest checkpoint is damaged, continues from its newest
intact checkpoint and ends bit for bit where the run that was never interrupted ends; when no
checkpoint is intact the resume stops with one line and deletes nothing.

Every case starts from a copy of one uninterrupted run of 24 steps (checkpoints every 4 steps),
cut back to what a run killed after its step-16 checkpoint leaves behind.
"""
import hashlib
import json
import shutil
import struct
import zipfile

import pytest
import torch

from trainer import TINY, metrics, train_here, worker_params

BASE = [*TINY, "--algorithm", "dsgd", "--topology", "ring", "--momentum", "0.9", "--steps-per-epoch", "12",
        "--epochs", "2", "--eval-every", "6", "--checkpoint-every", "4"]
FLAGS = [*BASE, "--keep-checkpoints", "0"]
KILLED_AFTER = 16


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted run: 24 steps, a checkpoint every 4."""
    out = tmp_path_factory.mktemp("whole") / "run"
    train_here(4, out, *FLAGS)
    return out


def step_name(step):
    return f"step-{step:08d}"


def killed_copy(whole, out, after=KILLED_AFTER):
    """A copy of the run as a kill right after the checkpoint at step AFTER leaves it: no later
    checkpoint, latest.json naming that one (metrics and logs past it remain, as they would)."""
    shutil.copytree(whole, out)
    ck = out / "checkpoints"
    for d in ck.glob("step-*"):
        if int(d.name[5:]) > after:
            shutil.rmtree(d)
    shutil.copy(ck / step_name(after) / "manifest.json", ck / "latest.json")
    return out


def files_of(out):
    """Every file of the run with its bytes' sha256."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def flip_bytes_inside_the_largest_tensor(path, n=16):
    """Flip N bytes in the middle of the largest tensor's data: the zip structure stays valid, so
    torch.load reads the file as if nothing happened."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    for i in range(start, start + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def tensors(state):
    """Every tensor in a loaded checkpoint, in a fixed order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for k in sorted(state, key=str) for t in tensors(state[k])]
    if isinstance(state, (list, tuple)):
        return [t for x in state for t in tensors(x)]
    return []


def lines_with(output, text):
    return [line for line in output.splitlines() if text in line]


def assert_ends_like_the_uninterrupted_run(out, whole):
    assert torch.equal(worker_params(out, 24), worker_params(whole, 24))
    assert [(m["step"], m["test_acc"]) for m in metrics(out)] == [(m["step"], m["test_acc"]) for m in metrics(whole)]


def test_the_manifests_hold_the_sha256_of_every_rank_file_the_trainer_wrote(whole):
    ck = whole / "checkpoints"
    for d in sorted(ck.glob("step-*")):
        manifest = json.loads((d / "manifest.json").read_text())
        assert (manifest["step"], manifest["dir"], manifest["world_size"]) == (int(d.name[5:]), d.name, 1)
        assert manifest["files"] == {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                                              "bytes": p.stat().st_size} for p in d.glob("rank*.pt")}
    newest = json.loads((ck / step_name(24) / "manifest.json").read_text())
    assert json.loads((ck / "latest.json").read_text()) == newest


def test_a_lost_latest_json_resumes_auto_from_the_newest_step_and_deletes_nothing(whole, tmp_path):
    out = killed_copy(whole, tmp_path / "run")
    (out / "checkpoints" / "latest.json").unlink()
    before = files_of(out)
    output = train_here(4, out, "--resume", "auto", "--out", str(out))
    newest = out / "checkpoints" / step_name(KILLED_AFTER)
    [note] = lines_with(output, "latest.json")
    assert note.endswith(f"{out / 'checkpoints' / 'latest.json'} is missing: resuming from the newest intact "
                         f"checkpoint, {newest}")
    assert "replaced the earlier run" not in output
    assert f"resumed from {newest} at step {KILLED_AFTER}" in output
    assert_ends_like_the_uninterrupted_run(out, whole)
    kept = {p for p in before if p.startswith(("checkpoints/step-", "logs/", "config.yaml"))}
    assert kept <= set(files_of(out))  # every checkpoint, log and setting of the first segment is still there
    assert (out / "logs" / "rank0.log").read_text().count(" pid ") == 2  # both segments' logs, in one file


def test_a_step_folder_named_by_path_resumes_without_latest_json(whole, tmp_path):
    out = killed_copy(whole, tmp_path / "run")
    (out / "checkpoints" / "latest.json").unlink()
    output = train_here(4, out, "--resume", str(out / "checkpoints" / step_name(8)))
    assert f"resumed from {out / 'checkpoints' / step_name(8)} at step 8" in output
    assert_ends_like_the_uninterrupted_run(out, whole)


def test_flipped_bytes_in_the_newest_checkpoint_fall_back_to_the_one_before_named_in_one_line(whole, tmp_path):
    out = killed_copy(whole, tmp_path / "run")
    bad = out / "checkpoints" / step_name(KILLED_AFTER) / "rank0.pt"
    flip_bytes_inside_the_largest_tensor(bad)
    damaged = tensors(torch.load(bad, weights_only=True))  # torch alone would use it without a word
    intact = tensors(torch.load(whole / "checkpoints" / step_name(KILLED_AFTER) / "rank0.pt", weights_only=True))
    assert len(damaged) == len(intact) and any(not torch.equal(a, b) for a, b in zip(damaged, intact))
    output = train_here(4, out, "--resume", str(out))
    previous = out / "checkpoints" / step_name(KILLED_AFTER - 4)
    [note] = lines_with(output, "is damaged")
    assert note.endswith(f"checkpoint file {bad} is damaged (its sha256 differs from its manifest's): resuming from "
                         f"the newest intact checkpoint, {previous}")
    assert note.split("] ", 1)[1] in (out / "logs" / "rank0.log").read_text()
    assert f"resumed from {previous} at step {KILLED_AFTER - 4}" in output
    assert_ends_like_the_uninterrupted_run(out, whole)


@pytest.mark.parametrize("resume", ["run", "auto"])
def test_when_every_checkpoint_is_damaged_the_resume_stops_with_one_line_and_deletes_nothing(whole, tmp_path,
                                                                                               resume):
    out = killed_copy(whole, tmp_path / "run")
    for d in (out / "checkpoints").glob("step-*"):
        flip_bytes_inside_the_largest_tensor(d / "rank0.pt")
    before = files_of(out)
    flags = ["--resume", str(out)] if resume == "run" else ["--resume", "auto", "--out", str(out)]
    res = train_here(4, out, *flags, ok=False)
    assert res.returncode == 2
    [line] = res.stdout.strip().splitlines()
    assert line.startswith(f"dsgd.train: error: no intact checkpoint to resume from in {out}: checkpoint file "
                           f"{out / 'checkpoints' / step_name(KILLED_AFTER) / 'rank0.pt'} is damaged")
    assert files_of(out) == before


@pytest.mark.parametrize("resume", ["run", "step folder"])
def test_a_run_saved_before_step_manifests_still_resumes(whole, tmp_path, resume):
    out = killed_copy(whole, tmp_path / "run")
    ck = out / "checkpoints"
    latest = json.loads((ck / "latest.json").read_text())
    del latest["files"]  # latest.json as dsgd wrote it then: no checksums
    (ck / "latest.json").write_text(json.dumps(latest))
    for m in ck.glob("step-*/manifest.json"):
        m.unlink()
    start = out if resume == "run" else ck / step_name(KILLED_AFTER)
    output = train_here(4, out, "--resume", str(start))
    assert f"resumed from {ck / step_name(KILLED_AFTER)} at step {KILLED_AFTER}" in output
    assert "is damaged" not in output and "is missing" not in output
    assert_ends_like_the_uninterrupted_run(out, whole)


def test_keep_checkpoints_1_still_leaves_a_checkpoint_to_fall_back_to(whole, tmp_path):
    out = tmp_path / "run"
    train_here(4, out, *BASE, "--keep-checkpoints", "1")
    assert sorted(d.name for d in (out / "checkpoints").glob("step-*")) == [step_name(0), step_name(20),
                                                                          step_name(24)]
    flip_bytes_inside_the_largest_tensor(out / "checkpoints" / step_name(24) / "rank0.pt")
    output = train_here(4, out, "--resume", str(out))
    assert f"resumed from {out / 'checkpoints' / step_name(20)} at step 20" in output
    assert torch.equal(worker_params(out, 24), worker_params(whole, 24))

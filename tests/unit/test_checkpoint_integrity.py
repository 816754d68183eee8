"""A checkpoint can be found without latest.json, and damage to it is seen, never used.

Each step folder holds a manifest with the sha256 and size of every rank file (hashed as the
bytes were written); a resume checks the files against it, passes over a damaged checkpoint for
the newest intact one, and says so. Small hand-made checkpoints of two ranks, no training: the
trainer's own runs are in tests/inprocess/test_checkpoint_integrity.py.
"""
import hashlib
import io
import json
import os
import shutil

import pytest
import torch

from dsgd.train import checkpoint as ckpt

WORLD = 2


def save(run, step, world=WORLD, keep=0, pinned=frozenset({0})):
    """One checkpoint as the trainer writes it: every rank's file, then rank 0's manifest."""
    meta = {"world_size": world, "workers_per_rank": 1, "seed": 0}
    files = [ckpt.save_rank(run, step, r, {"meta": meta, "x": torch.arange(256.0) + 1000 * step + r})
             for r in range(world)]
    ckpt.write_manifest(run, step, world, meta, keep, set(pinned), files=files)


def saved_run(tmp_path, steps=(0, 4, 8)):
    run = tmp_path / "run"
    for step in steps:
        save(run, step)
    return run


def folders(run):
    return [d.name for _, d in ckpt.step_folders(run / "checkpoints")]


def snapshot(run):
    """Every file under the run with its bytes' sha256: what a refused resume must leave as it was."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


def damage(path, at=None, n=16):
    """Flip N bytes of a file in place (same size): what a bad disk or a bad copy does."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    for i in range(at, at + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_manifest_holds_the_sha256_and_size_of_every_rank_file_as_it_is_on_disk(tmp_path):
    run = saved_run(tmp_path)
    d = run / "checkpoints" / "step-00000008"
    manifest = json.loads((d / "manifest.json").read_text())
    assert (manifest["format"], manifest["step"], manifest["dir"], manifest["world_size"]) == (
        ckpt.FORMAT, 8, "step-00000008", WORLD)
    assert manifest["seed"] == 0  # the run's settings travel with the checkpoint
    on_disk = {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size}
               for p in sorted(d.glob("rank*.pt"))}
    assert manifest["files"] == on_disk and len(on_disk) == WORLD
    # latest.json is the same manifest: old readers find what they always found, new ones the checksums
    assert json.loads((run / "checkpoints" / "latest.json").read_text()) == manifest


def test_hashing_while_writing_changes_no_byte_of_what_is_saved(tmp_path):
    state = {"format": ckpt.FORMAT, "step": 3, "rank": 1, "x": torch.arange(1000.0)}
    written = ckpt.save_rank(tmp_path, 3, 1, {"x": state["x"]})
    plain = io.BytesIO()
    torch.save(state, plain)  # the same state saved without anything in between
    on_disk = (ckpt.step_dir(tmp_path, 3) / "rank1.pt").read_bytes()
    assert on_disk == plain.getvalue()
    assert written == {"name": "rank1.pt", "sha256": hashlib.sha256(on_disk).hexdigest(), "bytes": len(on_disk)}


def test_each_process_writes_through_a_temporary_file_of_its_own(tmp_path):
    seen = []

    def write(f):
        seen.extend(p.name for p in tmp_path.iterdir())
        f.write(b"abc")
        f.write(memoryview(b"def"))

    assert ckpt.atomic_write(tmp_path / "x.json", write) == {"sha256": hashlib.sha256(b"abcdef").hexdigest(),
                                                            "bytes": 6}
    assert seen == [f"x.json.{os.getpid()}.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize("latest, why", [(None, "is missing"), ('{"format": "dsgd-che', "is unreadable")])
def test_without_a_readable_latest_json_the_newest_intact_step_folder_is_resumed_and_said(tmp_path, latest, why):
    run = saved_run(tmp_path)
    manifest = run / "checkpoints" / "latest.json"
    manifest.unlink() if latest is None else manifest.write_text(latest)
    before = snapshot(run)
    choice = ckpt.choose(str(run))
    assert (choice.run_dir, choice.ckpt_dir.name, choice.manifest["step"]) == (run, "step-00000008", 8)
    assert choice.note.startswith(f"{manifest} {why}")
    assert choice.note.endswith(f"resuming from the newest intact checkpoint, {run / 'checkpoints' / 'step-00000008'}")
    assert ckpt.find(str(run)) == (run, choice.ckpt_dir, choice.manifest)  # what the command line's setup reads
    assert snapshot(run) == before  # nothing is deleted or rewritten on the way


def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one_and_names_the_file(tmp_path):
    run = saved_run(tmp_path)
    bad = run / "checkpoints" / "step-00000008" / "rank1.pt"
    damage(bad)
    choice = ckpt.choose(str(run))
    assert choice.ckpt_dir.name == "step-00000004"
    assert choice.note == (f"checkpoint file {bad} is damaged (its sha256 differs from its manifest's): resuming "
                           f"from the newest intact checkpoint, {run / 'checkpoints' / 'step-00000004'}")
    assert "\n" not in choice.note


def test_a_truncated_or_missing_rank_file_is_damage_too(tmp_path):
    run = saved_run(tmp_path)
    short = run / "checkpoints" / "step-00000008" / "rank0.pt"
    short.write_bytes(short.read_bytes()[:-10])
    assert "is damaged (" in ckpt.choose(str(run)).note
    (run / "checkpoints" / "step-00000004" / "rank1.pt").unlink()
    choice = ckpt.choose(str(run))
    assert choice.ckpt_dir.name == "step-00000000"
    assert "step-00000004/rank1.pt is missing" in choice.note


def test_when_every_checkpoint_is_damaged_the_error_names_them_and_nothing_changes(tmp_path):
    run = saved_run(tmp_path)
    for step in (0, 4, 8):
        damage(run / "checkpoints" / f"step-{step:08d}" / "rank0.pt")
    before = snapshot(run)
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.find(str(run))
    message = str(e.value)
    assert message.startswith(f"no intact checkpoint to resume from in {run}: checkpoint file "
                              f"{run / 'checkpoints' / 'step-00000008' / 'rank0.pt'} is damaged")
    assert "step-00000004" in message and "step-00000000" in message and "\n" not in message
    assert snapshot(run) == before


def test_a_damaged_file_is_refused_before_it_is_unpickled(tmp_path):
    run = saved_run(tmp_path, steps=(0,))
    _, d, manifest = ckpt.find(str(run))
    damage(d / "rank0.pt")
    torch.load(d / "rank0.pt", weights_only=True)  # the damage is invisible to torch itself
    with pytest.raises(ckpt.CheckpointError, match="rank0.pt is damaged"):
        ckpt.load_rank(d, 0, manifest=manifest)


def test_leftover_temporary_files_and_unfinished_folders_are_not_checkpoints(tmp_path):
    run = saved_run(tmp_path)
    ck = run / "checkpoints"
    (ck / "latest.json").unlink()
    (ck / "latest.json.4242.tmp").write_text('{"format": "dsgd-checkpoint-2", "step": 12, "dir": "step-0000')
    (ck / "step-00000008" / "rank0.pt.4242.tmp").write_bytes(b"torn")
    (ck / "step-00000012").mkdir()  # a save interrupted before any rank finished its file
    (ck / "step-00000012" / "rank0.pt.4243.tmp").write_bytes(b"torn")
    (ck / "step-00000016").mkdir()  # every rank wrote, the manifest did not come
    shutil.copy(ck / "step-00000008" / "rank0.pt", ck / "step-00000016" / "rank0.pt")
    assert ckpt.choose(str(run)).ckpt_dir.name == "step-00000008"


def test_a_step_folder_named_by_path_needs_no_latest_json(tmp_path):
    run = saved_run(tmp_path)
    (run / "checkpoints" / "latest.json").unlink()
    run_dir, d, manifest = ckpt.find(str(run / "checkpoints" / "step-00000004"))
    assert (run_dir, d.name, manifest["step"], manifest["world_size"]) == (run, "step-00000004", 4, WORLD)
    damage(d / "rank0.pt")
    with pytest.raises(ckpt.CheckpointError, match="step-00000004/rank0.pt is damaged"):
        ckpt.find(str(d))  # named by the user: refused, not swapped for another


def legacy(run, latest_step):
    """The run as dsgd wrote it before step manifests: no manifest.json, latest.json without checksums."""
    ck = run / "checkpoints"
    for m in ck.glob("step-*/manifest.json"):
        m.unlink()
    old = {"format": ckpt.FORMAT, "step": latest_step, "dir": f"step-{latest_step:08d}", "world_size": WORLD,
           "workers_per_rank": 1, "seed": 0}
    (ck / "latest.json").write_text(json.dumps(old))
    return old


def test_a_run_saved_before_step_manifests_resumes_as_it_always_did(tmp_path):
    run = saved_run(tmp_path)
    old = legacy(run, 8)
    assert ckpt.choose(str(run)) == ckpt.Choice(run, run / "checkpoints" / "step-00000008", old)
    _, d, manifest = ckpt.find(str(run / "checkpoints" / "step-00000004"))  # by path: its own rank files say
    assert (d.name, manifest["step"], manifest["world_size"]) == ("step-00000004", 4, WORLD)
    assert ckpt.load_rank(d, 1, manifest=manifest)["step"] == 4


def test_an_old_step_folder_missing_a_rank_file_is_refused_by_name(tmp_path):
    run = saved_run(tmp_path)
    legacy(run, 8)
    (run / "checkpoints" / "step-00000004" / "rank1.pt").unlink()
    with pytest.raises(ckpt.CheckpointError, match=r"step-00000004 is incomplete: rank1.pt missing"):
        ckpt.find(str(run / "checkpoints" / "step-00000004"))


def test_an_old_run_without_latest_json_is_refused_with_the_folder_to_name(tmp_path):
    run = saved_run(tmp_path)
    legacy(run, 8)
    (run / "checkpoints" / "latest.json").unlink()
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.find(str(run))
    assert f"no checkpoint to resume from in {run}" in str(e.value)
    assert f"--resume {run / 'checkpoints' / 'step-00000008'}" in str(e.value)


def test_pruning_keeps_the_newest_complete_checkpoint_before_the_latest_to_fall_back_to(tmp_path):
    run = tmp_path / "run"
    for step in (0, 4, 8, 12):
        save(run, step, keep=1)
    assert folders(run) == ["step-00000000", "step-00000008", "step-00000012"]  # 0 is pinned, 8 the fallback
    damage(run / "checkpoints" / "step-00000012" / "rank0.pt")
    assert ckpt.choose(str(run)).ckpt_dir.name == "step-00000008"


def test_pruning_passes_over_unfinished_folders_to_keep_a_fallback_and_leaves_later_ones(tmp_path):
    run = tmp_path / "run"
    for step in (0, 4, 8):
        save(run, step)
    ck = run / "checkpoints"
    (ck / "step-00000008" / "manifest.json").unlink()  # as if the manifest write was interrupted
    shutil.copytree(ck / "step-00000004", ck / "step-00000020")  # a later folder from before a resume
    save(run, 12, keep=2, pinned=frozenset())
    assert folders(run) == ["step-00000004", "step-00000008", "step-00000012", "step-00000020"]

"""Checkpoints that survive crashes: per-rank files written atomically, one manifest per job.

Layout of a run directory:
    checkpoints/step-00000120/rank0.pt ... rankN.pt   one file per rank (its K workers)
    checkpoints/latest.json                          the newest checkpoint every rank finished

A rank file is written to a temporary name, fsynced and renamed, so a crash never leaves a
truncated file under the final name; the manifest is replaced the same way and only after
every rank has written, so it always names a complete checkpoint. Files load with
torch.load(weights_only=True): plain tensors and containers, never code.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

FORMAT = "dsgd-checkpoint-2"  # 2: one entry per component (workers, rule, mixer, meters)


def _check_format(found, where) -> None:
    if isinstance(found, str) and found.startswith("dsgd-checkpoint-") and found != FORMAT:
        raise CheckpointError(f"{where} was written by another version of dsgd ({found}; this one reads {FORMAT}): "
                              f"start a new run, or resume it with the version that wrote it")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, foreign, or does not fit this run."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> None:
    """write(file) to path.tmp, fsync, rename over path."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
             "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_rank(run_dir: Path, step: int, rank: int, state: dict) -> Path:
    d = step_dir(run_dir, step)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"rank{rank}.pt"
    atomic_write(path, lambda f: torch.save({"format": FORMAT, "step": step, "rank": rank, **state}, f))
    return path


def write_manifest(run_dir: Path, step: int, world_size: int, meta: dict, keep: int, pinned: set) -> None:
    """Name checkpoint `step` the latest (rank 0, after every rank saved), then prune old ones."""
    root = Path(run_dir) / "checkpoints"
    manifest = {"format": FORMAT, "step": step, "dir": step_dir(run_dir, step).name,
                "world_size": world_size, **meta}
    atomic_write(root / "latest.json", lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    if keep > 0:
        steps = sorted(int(p.name.split("-")[1]) for p in root.glob("step-*") if p.is_dir())
        for s in steps[:-keep]:
            if s not in pinned and s != step:
                shutil.rmtree(step_dir(run_dir, s), ignore_errors=True)


def find(resume: str) -> tuple[Path, Path, dict]:
    """(run dir, checkpoint dir, manifest) from a run directory or a checkpoint directory."""
    p = Path(resume)
    if (p / "checkpoints" / "latest.json").is_file():
        run_dir, manifest_path = p, p / "checkpoints" / "latest.json"
    elif (p / "latest.json").is_file():
        run_dir, manifest_path = p.parent, p / "latest.json"
    elif p.is_dir() and p.name.startswith("step-") and (p.parent / "latest.json").is_file():
        run_dir, manifest_path = p.parent.parent, p.parent / "latest.json"
    else:
        raise CheckpointError(f"no checkpoint to resume from in {resume} (expected checkpoints/latest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        raise CheckpointError(f"checkpoint manifest {manifest_path} is unreadable or corrupt") from None
    if isinstance(manifest, dict):
        _check_format(manifest.get("format"), manifest_path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{manifest_path} is not a dsgd checkpoint manifest")
    ckpt = p if p.name.startswith("step-") else run_dir / "checkpoints" / manifest["dir"]
    return run_dir, ckpt, manifest


def load_rank(ckpt_dir: Path, rank: int, mmap: bool = False) -> dict:
    """One rank's file; mmap: map it rather than read it (tensors are read when touched)."""
    path = Path(ckpt_dir) / f"rank{rank}.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # unpickling errors come in many types; all mean the same to the user
        raise CheckpointError(f"checkpoint file {path} is corrupt or not a dsgd checkpoint "
                              f"({type(e).__name__})") from None
    if isinstance(state, dict):
        _check_format(state.get("format"), path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dsgd checkpoint")
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        # A resume may see fewer (or more) GPUs than the save did: restore those both have.
        for i, gen in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(gen, i)

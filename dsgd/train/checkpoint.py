"""Checkpoints that survive crashes and show damage: per-rank files written atomically, a manifest per checkpoint.

Layout of a run directory:
    checkpoints/step-00000120/rank0.pt ... rankN.pt   one file per rank (its K workers)
    checkpoints/step-00000120/manifest.json          step, world size, settings, sha256 and size of every rank file
    checkpoints/latest.json                          the newest complete checkpoint's manifest

A file is written under a temporary name of its own process, fsynced and renamed, so a crash never
leaves a truncated file under the final name (a leftover *.tmp is never read). Each rank hashes its
file as the bytes go to disk; rank 0 writes the step's manifest only after every rank has written,
then replaces latest.json. So a step folder with a manifest is a complete checkpoint whose every
byte a resume can check: when latest.json is missing or unreadable, the newest step folder whose
files match their manifest is resumed; a damaged checkpoint is passed over for the newest intact
one before it, and the log says which file was damaged. Nothing is deleted on the way.
Checkpoints from before step manifests (latest.json without checksums) still resume unchecked.
Files load with torch.load(weights_only=True): plain tensors and containers, never code.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FORMAT = "dsgd-checkpoint-2"  # 2: one entry per component (workers, rule, mixer, meters)
LATEST, MANIFEST = "latest.json", "manifest.json"


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


class _HashingFile:
    """A file that hashes the bytes on their way in: the checksum is of exactly what was written,
    without reading the file back."""

    def __init__(self, f):
        self.f, self.sha256, self.bytes = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.bytes += memoryview(data).nbytes
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def atomic_write(path: Path, write) -> dict:
    """write(file) to a temporary file, fsync, rename over path; returns the sha256 and size of
    what was written. The temporary name holds the process id, so two processes writing one path
    never write into the same temporary file."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            hashing = _HashingFile(f)
            write(hashing)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # a full disk: no half-written file is left, and the error names the file
        tmp.unlink(missing_ok=True)
        cause = e if isinstance(e, OSError) else e.__cause__ or e.__context__  # torch.save wraps its writer's OSError
        if isinstance(cause, OSError) and cause.errno is not None:
            raise OSError(cause.errno, os.strerror(cause.errno), str(path)) from e
        raise
    _fsync_dir(path.parent)
    return {"sha256": hashing.sha256.hexdigest(), "bytes": hashing.bytes}


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=1).encode()))


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def step_folders(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every step folder in checkpoints/ ROOT, oldest first; other names (a
    leftover temporary file) are not checkpoints."""
    found = []
    for p in Path(root).glob("step-*"):
        digits = p.name[len("step-"):]
        if digits.isdigit() and p.is_dir():
            found.append((int(digits), p))
    return sorted(found)


def rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
             "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_rank(run_dir: Path, step: int, rank: int, state: dict) -> dict:
    """Write this rank's file; returns its name, sha256 and size, for rank 0's manifest."""
    d = step_dir(run_dir, step)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"rank{rank}.pt"
    written = atomic_write(path, lambda f: torch.save({"format": FORMAT, "step": step, "rank": rank, **state}, f))
    return {"name": path.name, **written}


def write_manifest(run_dir: Path, step: int, world_size: int, meta: dict, keep: int, pinned: set,
                   files: list[dict]) -> None:
    """Name checkpoint `step` complete (rank 0, after every rank saved; FILES: every rank's save_rank
    record): its own manifest first, then latest.json, which a lost or damaged one never takes down
    with it; then prune old checkpoints."""
    d = step_dir(run_dir, step)
    manifest = {"format": FORMAT, "step": step, "dir": d.name, "world_size": world_size, **meta,
                "files": {f["name"]: {"sha256": f["sha256"], "bytes": f["bytes"]} for f in files}}
    _write_json(d / MANIFEST, manifest)
    _write_json(d.parent / LATEST, manifest)
    if keep > 0:
        prune(run_dir, step, keep, pinned)


def drop_rank_files_past(run_dir: Path, step: int, world_size: int) -> None:
    """Remove the files of ranks >= WORLD_SIZE from checkpoint STEP: left by a rank lost while an
    elastic run wrote it, before the survivors wrote it again under their new numbers."""
    d = step_dir(run_dir, step)
    for path in d.glob("rank*.pt"):
        number = path.stem[len("rank"):]
        if number.isdigit() and int(number) >= world_size:
            path.unlink(missing_ok=True)


def prune(run_dir: Path, current: int, keep: int, pinned: set) -> None:
    """Delete the checkpoints before `current` beyond its keep - 1 newest predecessors, except the
    pinned ones (lr decays) and the newest complete one: should `current` turn out damaged, a
    resume falls back to that. Folders past `current` (left by a run resumed from an earlier
    checkpoint) are not this run's history and stay."""
    older = [(s, d) for s, d in step_folders(Path(run_dir) / "checkpoints") if s < current]
    window = {s for s, _ in older[max(0, len(older) - (keep - 1)):]} if keep > 1 else set()
    fallback = next((s for s, d in reversed(older) if _complete(d)), None)
    for s, d in older:
        if s not in window and s not in pinned and s != fallback:
            shutil.rmtree(d, ignore_errors=True)


def _complete(d: Path) -> bool:
    """A manifest, and every file it names at its recorded size. The bytes themselves are checked on
    resume; hashing at every save would read the whole previous checkpoint back."""
    manifest, _ = _read_manifest(d / MANIFEST)
    files = manifest.get("files") if manifest else None
    if not isinstance(files, dict) or not files:
        return False
    return all(isinstance(want, dict) and (d / name).is_file() and (d / name).stat().st_size == want.get("bytes")
               for name, want in files.items())


# -- choosing the checkpoint to resume ------------------------------------------------------------

@dataclass(frozen=True)
class Choice:
    """The checkpoint a resume continues from; note: why it is not the one latest.json names (None:
    it is)."""

    run_dir: Path
    ckpt_dir: Path
    manifest: dict
    note: str | None = None


def find(resume: str) -> tuple[Path, Path, dict]:
    """(run dir, checkpoint dir, manifest) from a run directory or a checkpoint directory."""
    choice = choose(resume)
    return choice.run_dir, choice.ckpt_dir, choice.manifest


def choose(resume: str) -> Choice:
    """The checkpoint to resume: a step folder given by path, else the run's newest intact one.

    Every rank checks every file of the candidates it looks at, so all ranks reach the same choice
    without talking to each other; a file is hashed once per process (see sha256_of)."""
    p = Path(resume)
    if p.name.startswith("step-") and p.is_dir():
        return _named_folder(p)
    if (p / "checkpoints").is_dir():
        return _newest_intact(p, resume)
    if p.is_dir() and ((p / LATEST).is_file() or step_folders(p)):
        return _newest_intact(p.parent, resume)  # the checkpoints/ folder itself
    raise CheckpointError(f"no checkpoint to resume from in {resume} (expected checkpoints/{LATEST})")


def _newest_intact(run_dir: Path, resume: str) -> Choice:
    """latest.json's checkpoint if its files match their checksums, else the newest step folder
    before it whose files do (before any, when latest.json is missing or unreadable)."""
    root = run_dir / "checkpoints"
    latest, why_not = _read_manifest(root / LATEST)
    if latest is not None and "files" not in latest:  # written before checksums: nothing to check
        return Choice(run_dir, root / latest["dir"], latest)
    problems = []
    if latest is not None:
        problem = damage(root / latest["dir"], latest)
        if problem is None:
            return Choice(run_dir, root / latest["dir"], latest)
        problems.append(problem)
        candidates = [(s, d) for s, d in step_folders(root) if s < latest["step"]]
    else:
        problems.append(f"{root / LATEST} {why_not}")
        candidates = step_folders(root)
    manifests = 0
    for _, d in reversed(candidates):
        manifest, _ = _read_manifest(d / MANIFEST)
        if manifest is None:
            continue  # incomplete, or written before step manifests
        manifests += 1
        problem = damage(d, manifest)
        if problem is None:
            return Choice(run_dir, d, manifest, f"{'; '.join(problems)}: resuming from the newest intact "
                                                f"checkpoint, {d}")
        problems.append(problem)
    if latest is None and manifests == 0:
        raise CheckpointError(f"no checkpoint to resume from in {resume} (expected checkpoints/{LATEST} or a "
                              f"checkpoints/step-*/{MANIFEST}){_unlisted_hint(candidates)}")
    shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    raise CheckpointError(f"no intact checkpoint to resume from in {resume}: {shown}; nothing was changed; "
                          f"start over with --overwrite true (replacing this run) or with another --out")


def _unlisted_hint(folders: list[tuple[int, Path]]) -> str:
    """For step folders without a manifest (written before step manifests, or interrupted): which
    one to name by path if it is whole."""
    with_files = [d for _, d in folders if any(d.glob("rank*.pt"))]
    if not with_files:
        return ""
    return (f"; {len(with_files)} step folder(s) have rank files but no {MANIFEST} (written by an older dsgd, "
            f"or interrupted): resume one by path if it is whole, e.g. --resume {with_files[-1]}")


def _named_folder(d: Path) -> Choice:
    """A step folder the user named: checked against its manifest (or latest.json's, when that names
    it); one written before step manifests is taken as it is, if every rank's file is there."""
    manifest, why_not = _read_manifest(d / MANIFEST)
    if manifest is None and (d / MANIFEST).exists():
        raise CheckpointError(f"{d / MANIFEST} {why_not}")
    if manifest is None:
        latest, _ = _read_manifest(d.parent / LATEST)
        manifest = latest if latest is not None and latest["dir"] == d.name else _manifest_from_files(d)
    problem = damage(d, manifest) if "files" in manifest else None
    if problem is not None:
        raise CheckpointError(f"{problem}; resume the run directory ({d.parent.parent}) to continue from its "
                              f"newest intact checkpoint")
    return Choice(d.parent.parent, d, manifest)


def _manifest_from_files(d: Path) -> dict:
    """The manifest of a step folder written without one, from its rank 0 file's settings: nothing
    to check the bytes against, but every rank's file must be there."""
    state = load_rank(d, 0, mmap=True)
    meta = state.get("meta") if isinstance(state.get("meta"), dict) else {}
    world = int(meta.get("world_size", len(list(d.glob("rank*.pt")))))
    missing = [f"rank{r}.pt" for r in range(world) if not (d / f"rank{r}.pt").is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {d} is incomplete: {', '.join(missing)} missing (it was saved by "
                              f"{world} ranks)")
    return {"format": FORMAT, "step": int(state["step"]), "dir": d.name, "world_size": world, **meta}


def _read_manifest(path: Path) -> tuple[dict | None, str]:
    """A manifest's contents, or None and why not ("is missing", "is unreadable", ...); one written
    by another version of dsgd is refused."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, "is missing"
    except (OSError, UnicodeDecodeError):
        return None, "is unreadable"
    try:
        manifest = json.loads(text)
    except ValueError:
        return None, "is unreadable (not JSON)"
    if isinstance(manifest, dict):
        _check_format(manifest.get("format"), path)
    if not (isinstance(manifest, dict) and manifest.get("format") == FORMAT and isinstance(manifest.get("step"), int)
            and isinstance(manifest.get("dir"), str) and manifest["dir"] == Path(manifest["dir"]).name
            and manifest["dir"].startswith("step-")):
        return None, "is not a dsgd checkpoint manifest"
    return manifest, ""


def damage(d: Path, manifest: dict) -> str | None:
    """What keeps checkpoint folder D from being what its manifest says, naming the first damaged
    file (None: every rank's file is there, whole)."""
    files, world = manifest.get("files"), manifest.get("world_size")
    names = [f"rank{r}.pt" for r in range(world)] if isinstance(world, int) and world > 0 else []
    if not names or not isinstance(files, dict) or sorted(files) != sorted(names):
        return f"{d / MANIFEST} does not list one file per rank"
    for name in names:
        problem = _file_damage(d / name, files[name])
        if problem is not None:
            return problem
    return None


def _file_damage(path: Path, want) -> str | None:
    if not path.is_file():
        return f"checkpoint file {path} is missing"
    want = want if isinstance(want, dict) else {}
    size = path.stat().st_size
    if size != want.get("bytes"):
        return f"checkpoint file {path} is damaged ({size} bytes, its manifest says {want.get('bytes')})"
    if sha256_of(path) != want.get("sha256"):
        return f"checkpoint file {path} is damaged (its sha256 differs from its manifest's)"
    return None


_DIGESTS: dict[tuple, str] = {}


def sha256_of(path: Path) -> str:
    """A file's sha256, hashed once per version of the file in this process: a resume looks at its
    checkpoint from the settings, the setup and the restore. A rewritten file (another inode, size
    or time) is hashed again."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def load_rank(ckpt_dir: Path, rank: int, mmap: bool = False, manifest: dict | None = None) -> dict:
    """One rank's file; mmap: map it rather than read it (tensors are read when touched). With a
    manifest that has checksums, the file must match its own before anything is unpickled."""
    path = Path(ckpt_dir) / f"rank{rank}.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    files = (manifest or {}).get("files")
    if isinstance(files, dict) and path.name in files:
        problem = _file_damage(path, files[path.name])
        if problem is not None:
            raise CheckpointError(problem)
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

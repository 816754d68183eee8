"""A run directory holds one run.

A new run into a directory that already holds one would mix two runs' metrics, checkpoints and
logs, so it is refused unless asked for: `--overwrite true` replaces the old run (only the files a
run writes; anything else in the directory stays), `--resume` continues it. A resume appends what
it changed to `resumes.jsonl`; `config.yaml` always holds the settings the next step is trained
with, so a later resume continues with them.

One job at a time: rank 0 holds an exclusive lock on the directory for the whole job
(`RunDirLock`), so a second job into the same directory is refused before it looks at anything.
Files a later start reads back (`config.yaml`, a rewritten `metrics.jsonl`) are replaced
atomically, so a crash leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import yaml

from dsgd.config import ConfigError

CONFIG, METRICS, RESUMES = "config.yaml", "metrics.jsonl", "resumes.jsonl"
FILES = (CONFIG, METRICS, RESUMES, "partition.json", "partition.png")  # what a run writes at the top level
REWRITTEN = (CONFIG, METRICS)  # replaced through a temporary NAME.<pid>.tmp, which a crash may leave
GROUPS = ("checkpoints", "logs", "tensorboard")  # folders a run writes into
LOCK = ".dsgd-lock"  # not a run file: it belongs to whichever job holds the directory now
ASIDE = ".replaced-run"  # the run an --overwrite start replaces, until that start commits
DISCARDED = ".replaced-run.discarded"  # a committed start's old run, being deleted
ALL_MOVED = ".all-moved"  # in ASIDE: the whole old run is there, so run files outside it are the new start's


class RunDirError(ConfigError):
    """The run directory cannot be used as the command asks: it holds another run and the command did
    not say what to do with it, another job is using it, or a file a resume needs is damaged."""


class RunDirLock:
    """An exclusive lock on a run directory, held by rank 0 for the whole job.

    Two jobs writing into one directory would interleave their metrics rows and train on from each
    other's checkpoints, so the second is refused, naming the first (the lock file records its pid,
    host, start time and command line). flock belongs to the open file: the kernel drops it when the
    holder ends in any way (kill -9 too), so a lock is never left stale; a file left behind is locked
    again by the next job. On a shared filesystem all hosts must see the lock (NFSv4 does).
    """

    def __init__(self, out: Path):
        self.out, self.path = Path(out), Path(out) / LOCK
        self.warning = None  # set when the filesystem cannot lock: the job goes on unprotected
        self._fd = None

    def acquire(self) -> "RunDirLock":
        """Take the lock or raise RunDirError naming its holder; creates the directory if need be."""
        self.out.mkdir(parents=True, exist_ok=True)
        for _ in range(10):  # a holder that ends unlinks the file: lock the one now at that path
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunDirError(f"{self.out} is in use by another job ({holder}): wait for it to end, or give "
                                  f"another --out") from None
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                self.warning = (f"cannot lock {self.out} ({os.strerror(e.errno)}): this filesystem does not "
                                f"support flock, so nothing stops a second job from writing there too")
                return self
            if _same_file(fd, self.path):
                self._fd = fd
                _held.append(self)
                self._record_holder()
                return self
            os.close(fd)
        raise RunDirError(f"cannot lock {self.out}: its lock file keeps changing (jobs starting and ending there)")

    def release(self) -> None:
        """Let the next job in. The file goes first, while still locked, so no job ever locks a file
        that is no longer the one at that path. Safe to call twice."""
        if self._fd is None:
            return
        if self in _held:
            _held.remove(self)
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _record_holder(self) -> None:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "command": shlex.join([sys.executable, *sys.argv])}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(self._fd)  # another host reads it while this job holds the file open


def _same_file(fd: int, path: Path) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def _holder(fd: int) -> str:
    """Who holds the lock, as the lock file says; its holder writes it right after locking, so an
    empty file is read again for a moment."""
    for _ in range(20):
        try:
            holder = json.loads(os.pread(fd, 65536, 0).decode())
            return f"pid {holder['pid']} on host {holder['host']}, since {holder['since']}"
        except (ValueError, KeyError, TypeError, OSError):
            time.sleep(0.05)
    return "its holder is not recorded in the lock file"


class StartInterrupted(KeyboardInterrupt):
    """A stop signal arrived while the job was starting, before its run replaced another for good."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Start:
    """The stop signals of a job that is starting: the first one stops the start, at once or, inside
    a step that must not be cut in two, as soon as that step is done; later ones are ignored, so
    they cannot cut short the rollback the first one set off."""

    def __init__(self):
        self.signum, self.pending, self.depth = 0, False, 0

    def handle(self, signum, frame) -> None:
        if self.signum:
            return
        self.signum = signum
        if self.depth:
            self.pending = True
        else:
            raise StartInterrupted(signum)


_starting: list[_Start] = []  # the start under way in this process, if any


@contextlib.contextmanager
def interruptible_start(signals):
    """While a job starts, a stop signal raises StartInterrupted: SIGTERM's default would end the
    process at once, leaving a run that --overwrite true was replacing set aside. The handlers the
    process had come back afterwards (only the main thread can set them; elsewhere nothing changes)."""
    start, previous = _Start(), {}
    for s in signals:
        try:
            previous[s] = signal.signal(s, start.handle)
        except ValueError:
            pass
    _starting.append(start)
    try:
        yield
    finally:
        _starting.remove(start)
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def uninterrupted():
    """A step that must not be cut in two (moving a run aside or back, committing): a stop signal
    that arrives meanwhile is raised once the step is done, where the caller can undo it whole."""
    start = _starting[-1] if _starting else None
    if start is None:
        yield
        return
    start.depth += 1
    try:
        yield
    finally:
        start.depth -= 1
    if start.pending and not start.depth:
        start.pending = False
        raise StartInterrupted(start.signum)


_held: list[RunDirLock] = []  # the locks this process holds, released when its command ends


def release_held_locks() -> None:
    """Let go of every run directory this process locked: the command has ended, however it ended
    (the in-process path runs many commands in one process, one after another)."""
    while _held:
        _held.pop().release()


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a crash at any moment leaves either the old file or the
    new one: write a temporary file of this process, flush it to disk, then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every filesystem lets a folder be synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _run_files(out: Path) -> dict[str, list[Path]]:
    """What a run wrote in `out`, by the name shown to the user."""
    found = {name: [out / name, *sorted(out.glob(f"{name}.*.tmp"))] if name in REWRITTEN else [out / name]
             for name in FILES if (out / name).is_file()}
    ck = out / "checkpoints"
    groups = {"checkpoints/": sorted(ck.glob("step-*")) + sorted(ck.glob("latest.json*")),
              "logs/": sorted((out / "logs").glob("rank*.log")),
              "tensorboard/": sorted((out / "tensorboard").glob("events.out.tfevents.*"))}
    found.update({name: paths for name, paths in groups.items() if paths})
    return found


def holds_run(out: Path) -> list[str]:
    """Names of the run files in `out` (empty: no run there)."""
    return list(_run_files(Path(out)))


def clear(out: Path) -> list[str]:
    """Remove the run files in `out` (and the folders they leave empty); returns what was removed."""
    out = Path(out)
    found = _run_files(out)
    for paths in found.values():
        for p in paths:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
    _remove_empty_folders(out)
    return list(found)


class Claim:
    """Make `out` ready for this run before any rank writes there (rank 0, while the others wait).

    resume_dir: the run directory the checkpoint comes from (None: a new run). auto_fresh: `--resume
    auto` found no checkpoint, so the leftovers of a run that never checkpointed are replaced.
    A run being replaced is first moved aside, and only deleted once the new run has started
    (`commit`): a start that fails, is interrupted or is stopped by a signal puts it back
    (`rollback`), and one killed outright leaves it aside for the next start to put back (`recover`).
    """

    ASIDE = ASIDE

    def __init__(self, out: Path, overwrite: bool, resume_dir: str | None, auto_fresh: bool):
        self.out, self.note, self.replaced = Path(out), None, False
        self.recovered = recover(self.out)  # normally done already, under the lock, by the caller
        found = _run_files(self.out)
        if not found:
            return
        files = ", ".join(found)
        if resume_dir is not None:
            if Path(resume_dir).resolve() == self.out.resolve():
                return  # continuing the run that is there
            raise RunDirError(f"{out} already holds another run ({files}): give an empty --out to continue "
                              f"{resume_dir} in, or leave --out out to continue it in place")
        if not (overwrite or auto_fresh):
            raise RunDirError(f"{out} already holds a run ({files}): continue it with --resume {out}, replace "
                              f"it with --overwrite true, or give another --out")
        with uninterrupted():
            self._move_aside(found)
            self.replaced = True
            _remove_empty_folders(self.out)
        why = "--overwrite true" if overwrite else "--resume auto found no checkpoint"
        self.note = f"{why}: replaced the earlier run in {out} ({files})"

    def _move_aside(self, found: dict[str, list[Path]]) -> None:
        """Move the old run into ASIDE, then mark it whole; stopped halfway (an error, Ctrl-C), it
        moves back what it had moved, so the old run is never split between two places."""
        aside = self.out / ASIDE
        try:
            for paths in found.values():
                for p in paths:
                    dest = aside / p.relative_to(self.out)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    p.rename(dest)
            (aside / ALL_MOVED).touch()
        except BaseException as e:
            if aside.exists():
                _put_back(self.out)
                e.put_back_in = self.out
            raise

    def commit(self) -> None:
        """The new run has started: the old one goes for good. The rename makes that one step, so a
        deletion cut short leaves nothing that a later start could mistake for a run to put back."""
        if not self.replaced:
            return
        discarded = self.out / DISCARDED
        with uninterrupted():
            shutil.rmtree(discarded, ignore_errors=True)
            os.rename(self.out / ASIDE, discarded)
            self.replaced = False
        shutil.rmtree(discarded, ignore_errors=True)

    def rollback(self) -> None:
        """The new run did not start: remove what it wrote, put the old run back. The mark goes once
        the new files are gone, so a rollback cut short is finished by `recover` without deleting
        old files it had already put back."""
        if not self.replaced:
            return
        with uninterrupted():
            clear(self.out)
            (self.out / ASIDE / ALL_MOVED).unlink(missing_ok=True)
            _put_back(self.out)
            self.replaced, self.note = False, None


def recover(out: Path) -> str | None:
    """Undo what a start killed outright (kill -9, a lost node) left in `out`: the old run it had set
    aside goes back (its own files, if it wrote any, are removed first), and the old run of a start
    that had committed is deleted. Returns a line for the user when a run was put back."""
    out = Path(out)
    shutil.rmtree(out / DISCARDED, ignore_errors=True)
    aside = out / ASIDE
    if not aside.is_dir():
        return None
    with uninterrupted():
        if (aside / ALL_MOVED).exists():
            clear(out)  # the interrupted start's files: it never trained
            (aside / ALL_MOVED).unlink()
        _put_back(out)
    names = ", ".join(_run_files(out)) or "nothing"
    return (f"put back the earlier run in {out} ({names}) that an --overwrite start, stopped before it "
            f"trained, had left in {out / ASIDE}")


def _put_back(out: Path) -> None:
    """Move everything in ASIDE back to its place, replacing a file of the new start in the way."""
    aside = out / ASIDE
    for src in _aside_entries(aside):
        dest = out / src.relative_to(aside)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove(dest)
        os.rename(src, dest)
    shutil.rmtree(aside, ignore_errors=True)  # only the mark and empty folders are left


def _aside_entries(aside: Path) -> list[Path]:
    """What was moved aside: top-level files, and the entries of the folders a run writes into."""
    if not aside.is_dir():
        return []
    entries = []
    for entry in sorted(aside.iterdir()):
        if entry.name == ALL_MOVED:
            continue
        if entry.name in GROUPS and entry.is_dir() and not entry.is_symlink():
            entries.extend(sorted(entry.iterdir()))
        else:
            entries.append(entry)
    return entries


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _remove_empty_folders(out: Path) -> None:
    for sub in GROUPS:
        try:
            (out / sub).rmdir()
        except OSError:  # absent, or holds files a run did not write
            pass


def _flat(settings: dict) -> dict:
    return {k: v for section in settings.values() for k, v in section.items()}


def changes(before: dict, after: dict) -> dict:
    """{setting: [old, new]} for every setting that differs between two `Config.as_dict()`s."""
    old, new = _flat(before), _flat(after)
    same_place = Path(str(old.get("out"))).resolve() == Path(str(new.get("out"))).resolve()
    return {k: [old.get(k), v] for k, v in new.items() if old.get(k) != v and not (k == "out" and same_place)}


def resume_record(step: int, before: dict, after: dict, ranks: tuple[int, int], workers_per_rank: int,
                  checkpoint: str) -> dict:
    """One row of resumes.jsonl. ranks: (the checkpoint's, this run's)."""
    changed = changes(before, after)
    if ranks[0] != ranks[1]:
        changed["ranks"] = list(ranks)
    return {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "checkpoint": checkpoint,
            "ranks": ranks[1], "workers_per_rank": workers_per_rank, "changed": changed}


def write_settings(out: Path, settings: dict, record: dict | None) -> None:
    """config.yaml <- the settings trained with from now on (replaced atomically: an emptied or
    half-written config.yaml would make the next resume train with other settings); a resume also
    appends its record."""
    out = Path(out)
    write_atomically(out / CONFIG, yaml.safe_dump(settings, sort_keys=False))
    if record is not None:
        with open(out / RESUMES, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_settings(run_dir: Path) -> dict:
    """The settings a run's config.yaml holds, or RunDirError when it is missing, empty or damaged:
    resuming with defaults in place of the run's own settings would train another run."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunDirError(f"{run_dir} has no {CONFIG} to resume with")
    try:
        settings = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RunDirError(f"cannot resume: {path} is damaged (not valid YAML: {str(e).splitlines()[0]}), so the "
                          f"run's settings are unknown; restore it, or start a new run") from None
    if not settings or not isinstance(settings, dict):
        what = "empty" if not settings else "damaged (not a mapping of settings)"
        raise RunDirError(f"cannot resume: {path} is {what}, so the run's settings are unknown; restore it, or "
                          f"start a new run")
    return settings


"""Where a run reports: metrics.jsonl and TensorBoard (rank 0), a progress line, per-rank logs.

metrics.jsonl is appended one flushed row at a time, so a crash can only tear its last line; a
resume drops such a line (saying so) and rewrites the file atomically.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from dsgd.train.progress import Progress
from dsgd.train.rundir import METRICS, RunDirError, write_atomically


class Meters:
    """Running sums between evaluations, compute and wall seconds; saved with the run so a resume continues them.

    wall_s is the training wall time of every segment of the run up to now (a resumed run adds
    its own to what the checkpoint had; the time of steps that were redone is not counted twice).
    """

    def __init__(self):
        self.compute_s = 0.0
        self.window = [0.0, 0.0, 0.0]  # loss x samples, correct, samples since the last evaluation
        self.wall_s = 0.0  # wall seconds of the earlier segments, until this one's clock starts
        self._origin = None

    def start_clock(self) -> float:
        """Start this segment's clock; returns when the run would have started had it never stopped."""
        self._origin = time.time() - self.wall_s
        return self._origin

    def elapsed(self) -> float:
        return self.wall_s if self._origin is None else time.time() - self._origin

    def add_batch(self, loss_sum: float, correct: float, seen: int) -> None:
        self.window = [self.window[0] + loss_sum, self.window[1] + correct, self.window[2] + seen]

    def state_dict(self) -> dict:
        return {"compute_s": self.compute_s, "window": list(self.window), "wall_s": self.elapsed()}

    def load_state_dict(self, state: dict) -> None:
        self.compute_s, self.window = state["compute_s"], list(state["window"])
        self.wall_s, self._origin = float(state.get("wall_s", 0.0)), None  # absent in older checkpoints

    def regroup_state(self, g) -> dict:
        """Another split of the workers: rank 0 carries the loss window's totals (reported as sums
        over ranks); every other counter is reported as a mean over ranks and starts from it."""
        state = {k: g.mean_counter(lambda s, k=k: s[k]) for k, v in g.old[0].items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        state["window"] = [g.sum_on_rank0(lambda s, i=i: s["window"][i]) for i in range(len(self.window))]
        return {**g.old[0], **state}


class RunLog:
    """Only rank 0 writes shared files; every rank writes its own plain log.

    The TensorBoard writer is opened at the first row, so that after a resume it can be opened
    with purge_step: TensorBoard then hides the events past the checkpoint, as truncate_after
    drops their rows from metrics.jsonl, and the redone steps appear once.
    """

    def __init__(self, out: Path, rank: int, tensorboard: bool = True, stream=None):
        self.out, self.rank = out, rank
        (out / "logs").mkdir(parents=True, exist_ok=True)
        self._rank_log = open(out / "logs" / f"rank{rank}.log", "a", buffering=1)
        self._had_metrics = (out / METRICS).is_file()   # a resumed run whose rows were deleted says so
        self._metrics = open(out / METRICS, "a", buffering=1) if rank == 0 else None
        self._progress = Progress(stream)
        self._tb, self._tb_class, self._tb_purge = None, None, None
        if rank == 0 and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb_class = SummaryWriter
            except ImportError:
                self.info("tensorboard is not installed: metrics go to metrics.jsonl only")
        self._t0 = time.time()
        self.rank_only(f"rank {rank} pid {os.getpid()} host {socket.gethostname()}")

    def become(self, rank: int) -> None:
        """This process is rank RANK now (an elastic run's survivors are numbered again): the new rank 0
        takes over metrics.jsonl and TensorBoard, first dropping a last line torn by the lost rank 0."""
        if rank == self.rank:
            return
        self.rank_only(f"now rank {rank} (was rank {self.rank})")
        self.rank = rank
        if rank == 0 and self._metrics is None:
            path = self.out / METRICS
            if path.is_file():
                text = path.read_bytes()
                if text and not text.endswith(b"\n"):
                    write_atomically(path, text[:text.rfind(b"\n") + 1].decode(errors="replace"))
            self._metrics = open(path, "a", buffering=1)
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb_class = SummaryWriter
            except ImportError:
                pass

    def info(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        self._rank_log.write(line + "\n")
        if self.rank == 0:
            self._progress.end_line()
            print(line, file=self._progress.stream, flush=True)

    def rank_only(self, msg: str) -> None:
        self._rank_log.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")

    def metrics(self, row: dict) -> None:
        if self._metrics is None:
            return
        self._append_row(row)
        if self._tb is None and self._tb_class is not None:
            self._tb = self._tb_class(str(self.out / "tensorboard"), purge_step=self._tb_purge)
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._tb.add_scalar(k, v, row["step"])
            self._tb.flush()

    def _append_row(self, row: dict) -> None:
        """One whole row, on disk before the checkpoint that follows it: a crash tears the last line at most."""
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()
        os.fsync(self._metrics.fileno())

    def truncate_after(self, step: int, in_place: bool = True) -> None:
        """Drop metric rows past `step` (written after the checkpoint a run resumes from), and their
        TensorBoard events: those at steps >= purge_step are hidden by the events written from now on.
        A last line torn by a crash is dropped too; the file is replaced atomically. IN_PLACE: the run
        continues in the directory it was saved from, where a missing file means its rows were lost."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        self._tb_purge = step + 1
        path = self.out / METRICS
        lines, torn = read_rows(path)
        kept = [line for line, row in lines if row["step"] <= step]
        if torn:
            self.info(f"dropped the last line of {path}, torn by a crash while it was written: {torn[:80]!r}")
        if in_place and not self._had_metrics and step > 0:
            self.info(f"{path} was missing: the rows up to step {step} are lost; the rows from here on start it again")
        if len(kept) == len(lines) and not torn:
            return  # nothing to drop: the file stays as it is
        self._metrics.close()
        write_atomically(path, "".join(line + "\n" for line in kept))
        self._metrics = open(path, "a", buffering=1)

    def progress(self, step: int, total: int, loss: float, acc: float, H: int, samples_per_s: float,
                 eta_s: float | None = None) -> None:
        """Rank 0's progress line (a bar redrawn in place on a terminal); every rank's log line."""
        if self.rank == 0:
            self._progress.show(step, total, loss, acc, H, samples_per_s, eta_s)
        self.rank_only(f"step {step} loss {loss:.4f} acc {acc:.3f} H {H}")

    def close(self) -> None:
        if self.rank == 0:
            self._progress.end_line()
        for f in (self._rank_log, self._metrics):
            if f is not None:
                f.close()
        if self._tb is not None:
            self._tb.close()


def read_rows(path: Path) -> tuple[list[tuple[str, dict]], str]:
    """metrics.jsonl's rows as (line, row), and its last line when a crash tore it (no newline at
    its end, or not a JSON row), else "". A damaged line before the last one is not from a crash
    while appending: RunDirError, rather than dropping rows silently."""
    text = path.read_text(errors="replace") if path.is_file() else ""
    lines = text.split("\n")
    last = lines.pop()  # "" when the file ends with a newline
    torn = last if last.strip() else ""
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        row = _row(line)
        if row is None and number == len(lines) and not torn:
            torn = line
        elif row is None:
            raise RunDirError(f"cannot resume: line {number} of {path} is not a metrics row (the file is damaged): "
                              f"repair or remove that line")
        else:
            rows.append((line, row))
    return rows, torn


def _row(line: str) -> dict | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) and isinstance(row.get("step"), int) else None

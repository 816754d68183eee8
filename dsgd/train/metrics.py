"""Where a run reports: metrics.jsonl and TensorBoard (rank 0), a progress line, per-rank logs."""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path


class Meters:
    """Running sums between evaluations, and compute seconds; saved with the run so a resume continues them."""

    def __init__(self):
        self.compute_s = 0.0
        self.window = [0.0, 0.0, 0.0]  # loss x samples, correct, samples since the last evaluation

    def add_batch(self, loss_sum: float, correct: float, seen: int) -> None:
        self.window = [self.window[0] + loss_sum, self.window[1] + correct, self.window[2] + seen]

    def state_dict(self) -> dict:
        return {"compute_s": self.compute_s, "window": list(self.window)}

    def load_state_dict(self, state: dict) -> None:
        self.compute_s, self.window = state["compute_s"], list(state["window"])


class RunLog:
    """Only rank 0 writes shared files; every rank writes its own plain log."""

    def __init__(self, out: Path, rank: int, tensorboard: bool = True):
        self.out, self.rank = out, rank
        (out / "logs").mkdir(parents=True, exist_ok=True)
        self._rank_log = open(out / "logs" / f"rank{rank}.log", "a", buffering=1)
        self._metrics = open(out / "metrics.jsonl", "a", buffering=1) if rank == 0 else None
        self._tb = None
        if rank == 0 and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                self.info("tensorboard is not installed: metrics go to metrics.jsonl only")
        self._t0 = time.time()
        self.rank_only(f"rank {rank} pid {os.getpid()} host {socket.gethostname()}")

    def info(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        self._rank_log.write(line + "\n")
        if self.rank == 0:
            print(line, flush=True)

    def rank_only(self, msg: str) -> None:
        self._rank_log.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")

    def metrics(self, row: dict) -> None:
        if self._metrics is None:
            return
        self._metrics.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._tb.add_scalar(k, v, row["step"])
            self._tb.flush()

    def truncate_after(self, step: int) -> None:
        """Drop metric rows past `step` (written after the checkpoint a run resumes from)."""
        path = self.out / "metrics.jsonl"
        self._metrics.close()
        rows = [r for r in path.read_text().splitlines() if r.strip() and json.loads(r)["step"] <= step]
        path.write_text("".join(r + "\n" for r in rows))
        self._metrics = open(path, "a", buffering=1)

    def progress(self, step: int, total: int, loss: float, acc: float, H: int, samples_per_s: float) -> None:
        if self.rank == 0:
            pct = 100.0 * step / max(1, total)
            sys.stdout.write(f"step {step}/{total} ({pct:5.1f}%)  loss {loss:.4f}  acc {acc:.3f}  "
                             f"H {H}  {samples_per_s:,.0f} samples/s\n")
            sys.stdout.flush()
        self.rank_only(f"step {step} loss {loss:.4f} acc {acc:.3f} H {H}")

    def close(self) -> None:
        for f in (self._rank_log, self._metrics):
            if f is not None:
                f.close()
        if self._tb is not None:
            self._tb.close()

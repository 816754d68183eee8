"""Helpers the benchmarks share: argument types, timing, peak memory, a trainer built from flags."""
from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch


def whole_number(text: str, lowest: int) -> int:
    """TEXT as an integer of at least LOWEST, or argparse's one-line refusal naming what was given."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {lowest}, got {text!r}") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"must be >= {lowest}, got {value}")
    return value


def positive(text: str) -> int:
    return whole_number(text, 1)


def non_negative(text: str) -> int:
    return whole_number(text, 0)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def load_average() -> float:
    """1-minute load average: above the core count, other processes share the CPUs and times inflate."""
    return os.getloadavg()[0]


def median(values) -> float:
    return float(statistics.median(values))


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a stopped clock has seen it finish."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of fn(), GPU work included."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def set_threads(threads: int) -> None:
    """torch intra-op threads; 0 leaves torch's choice (one per core)."""
    if threads > 0:
        torch.set_num_threads(threads)


class PeakMemory:
    """Peak memory of what runs between start() and read_mb(), above the level at start().

    GPU: torch.cuda.max_memory_allocated, exact for tensors. CPU: the process's resident-set
    high-water mark (VmHWM), reset at start() through /proc/self/clear_refs, minus the
    resident set then, after handing freed heap memory back to the OS. The CPU figure is
    approximate: pages the allocator still keeps can be reused without raising the mark.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.method = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "VmHWM since reset"
        self._base = 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return
        _release_free_heap()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # 5: reset the peak resident set size to the current one
        except OSError:
            self.method = "VmHWM since process start (could not reset)"
        self._base = _status_kb("VmRSS") * 1024

    def read_mb(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _status_kb("VmHWM") * 1024
        return max(0, peak - self._base) / 2**20


def _release_free_heap() -> None:
    """Hand memory freed by earlier work back to the OS (glibc malloc_trim), so that work
    measured next raises the resident set for what it allocates instead of reusing it."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the figure stays a lower bound
        pass


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {key}")


def build_run(flags: list[str], mixer):
    """A trainer (dsgd.train.loop.Run) from `python -m dsgd.train` flags, writing to a temporary directory.

    Returns (run, tmp): call finish(run, tmp) when done with it.
    """
    from dsgd.config import parse
    from dsgd.train import build
    from dsgd.train.loop import Run
    tmp = tempfile.TemporaryDirectory(prefix="dsgd-bench-")
    cfg, _ = parse([*flags, "--out", tmp.name])
    build.check(cfg, mixer.comm.size)
    return Run(cfg, mixer, Path(tmp.name)), tmp


def finish(run, tmp) -> None:
    run.log.close()
    tmp.cleanup()


def report_main(argv, parse_args, run, table, rank: int = 0) -> int:
    """The body of every benchmark's main(): parse, measure, and print JSON or a table on rank 0."""
    import json
    import sys
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = run(args)
    if rank == 0:
        print(json.dumps(report) if args.json else table(report), flush=True)
    return 0


def step_comparison_options(ap) -> None:
    """The options of a benchmark that times two sides' training steps alternately."""
    ap.add_argument("--batch-size", type=positive, default=32)
    ap.add_argument("--repeats", type=positive, default=200, help="timed steps of each side")
    ap.add_argument("--warmup", type=non_negative, default=10, help="untimed steps first")
    ap.add_argument("--threads", type=non_negative, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

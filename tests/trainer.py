"""Run `python -m dsgd.train` two ways, and read what a run left behind.

`train` launches it under a real mpirun; `train_here` runs the same command inside this process,
all workers on one `SelfCommunicator` through the real `Mixer`. One rank of K workers sums in the
same order as K ranks of one (tests/mpi/test_trainer_layouts.py shows it bit for bit per rule
family), so what does not depend on MPI is proven here without starting processes."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
from pathlib import Path

import torch

import mpi_harness

FAST = ["--dataset", "fashion-mnist", "--model", "cnn", "--norm", "none", "--batch-size", "32",
        "--lr", "0.05", "--momentum", "0.9", "--log-every", "1000", "--eval-samples", "2000"]
# Machinery tests (resume, layouts) use the tiny MLP: what they check does not depend on the model.
TINY = ["--model", "mlp"]


def _argv(out: Path, flags) -> list[str]:
    base = [] if "--resume" in flags else [*FAST, "--out", str(out)]  # a resumed run keeps its settings
    return [*base, *flags]


def train_args(out: Path, *flags: str) -> list[str]:
    """The arguments of `python -m dsgd.train` that `train` runs (an mpi_harness.Batch program)."""
    return ["-m", "dsgd.train", *_argv(out, flags)]


def train(np: int, out: Path, *flags: str, timeout: float = 300, ok: bool = True):
    args = train_args(out, *flags)
    if ok:
        return mpi_harness.run_ok(np, args, timeout=timeout)
    return mpi_harness.run(np, args, timeout=timeout)


def train_here(workers: int, out: Path, *flags: str, ok: bool = True):
    """The trainer with WORKERS workers in this process (one rank, one thread, as a test rank has):
    its output (stdout and stderr together) when OK, else the CompletedProcess-like result."""
    from dsgd.comm import SelfCommunicator
    from dsgd.train.cli import main
    argv = _argv(out, flags)
    if "--workers-per-rank" not in flags:
        argv += ["--workers-per-rank", str(workers)]
    text, threads, env = io.StringIO(), torch.get_num_threads(), dict(os.environ)
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            try:
                status = main(argv, comm=SelfCommunicator())
            except SystemExit as e:
                status = e.code if isinstance(e.code, int) else 1
    finally:
        torch.set_num_threads(threads)
        os.environ.clear()
        os.environ.update(env)
    res = subprocess.CompletedProcess(["dsgd.train", *argv], status, text.getvalue(), "")
    if ok:
        assert status == 0, f"in-process run failed with {status}:\n{res.stdout[-6000:]}"
        return res.stdout
    return res


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def latest_step(out: Path) -> int:
    return json.loads((Path(out) / "checkpoints" / "latest.json").read_text())["step"]


def worker_params(out: Path, step: int | None = None) -> torch.Tensor:
    """Parameters of every worker, stacked in global worker order, from a checkpoint (default: latest)."""
    step = latest_step(out) if step is None else step
    d = Path(out) / "checkpoints" / f"step-{step:08d}"
    rows = []
    for r in range(len(list(d.glob("rank*.pt")))):
        state = torch.load(d / f"rank{r}.pt", weights_only=True)
        rows.append(torch.cat([b for b in state["workers"]["params"]], dim=1))
    return torch.cat(rows, dim=0)

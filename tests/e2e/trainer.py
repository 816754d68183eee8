"""Launch `python -m dsgd.train` under real mpirun, and read what a run left behind."""
from __future__ import annotations

import json
from pathlib import Path

import torch

import mpi_harness

FAST = ["--dataset", "fashion-mnist", "--model", "cnn", "--norm", "none", "--batch-size", "32",
        "--lr", "0.05", "--momentum", "0.9", "--log-every", "1000", "--eval-samples", "2000"]
# Machinery tests (resume, layouts) use the tiny MLP: what they check does not depend on the model.
TINY = ["--model", "mlp"]


def train(np: int, out: Path, *flags: str, timeout: float = 300, ok: bool = True):
    base = [] if "--resume" in flags else [*FAST, "--out", str(out)]  # a resumed run keeps its settings
    args = ["-m", "dsgd.train", *base, *flags]
    if ok:
        return mpi_harness.run_ok(np, args, timeout=timeout)
    return mpi_harness.run(np, args, timeout=timeout)


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

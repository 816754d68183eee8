"""Run a program under a real `mpirun` with a hard timeout, for the multi-rank tests."""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from dsgd import launcher

REPO = launcher.REPO
PROGRAMS = REPO / "tests" / "mpi" / "programs"


def run(np: int, args: list[str], timeout: float = 120, env: dict | None = None,
        cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m mpi4py ARGS` on NP ranks; a job still running after TIMEOUT fails the test.

    One thread per rank, whatever the cores: tests compare layouts (4 x 1 against 1 x 4) bit for bit,
    and a reduction split over another number of threads rounds differently."""
    try:
        return launcher.run(np, args, timeout=timeout, env=env, cwd=cwd or REPO, threads=1)
    except TimeoutError as e:
        raise AssertionError(str(e)) from None


def run_ok(np: int, args: list[str], timeout: float = 120, env: dict | None = None) -> str:
    """Run and require exit status 0; return the combined output."""
    res = run(np, args, timeout=timeout, env=env)
    assert res.returncode == 0, f"mpirun -np {np} failed with {res.returncode}:\n{res.stdout[-6000:]}"
    return res.stdout


def program(name: str) -> str:
    return str(PROGRAMS / name)


mpirun_env = launcher.mpirun_env
mpirun_command = launcher.mpirun_command


def with_ft(np: int, args: list, replacements: bool = False) -> list:
    """The suite's mpirun line (one thread per rank) with ULFM on; REPLACEMENTS: spawned ranks too."""
    return launcher.fault_tolerant(mpirun_command(np, args, threads=1), replacements)


class Batch:
    """Programs run several to a job: one `mpirun` of as many ranks as the largest program needs runs
    every program in turn (tests/mpi/programs/batch.py), each on the job's first N ranks in a world of
    its own, so ranks start once per test file rather than once per program or rank count. Programs
    run by rank count, then in the order listed (programs of one count share a torch.distributed group).

    JOBS maps a key to (np, args) as `run` takes them; `output(key)` is that program's stdout and
    stderr, rank 0's first, running the job on first use. A program that fails ends the job: every
    program not yet finished fails its test with the job's output."""

    def __init__(self, jobs: dict, timeout: float = 600):
        self.jobs, self.timeout, self.results = dict(jobs), timeout, {}

    def output(self, key) -> str:
        if key not in self.results:
            self._run()
        ok, text = self.results[key]
        assert ok, text
        return text

    def _run(self) -> None:
        keys = sorted(self.jobs, key=lambda k: self.jobs[k][0])
        size = max(n for n, _ in self.jobs.values())
        with tempfile.TemporaryDirectory(prefix="mpi-batch-") as tmp:
            spec = Path(tmp) / "spec.json"
            spec.write_text(json.dumps({"dir": tmp, "programs": [[self.jobs[k][0], list(self.jobs[k][1])]
                                                                 for k in keys]}))
            res = run(size, [program("batch.py"), str(spec)], timeout=self.timeout)
            for i, key in enumerate(keys):
                np = self.jobs[key][0]
                done = all((Path(tmp) / f"{i}.rank{r}.done").is_file() for r in range(np))
                text = "".join((Path(tmp) / f"{i}.rank{r}.txt").read_text() for r in range(np)
                               if (Path(tmp) / f"{i}.rank{r}.txt").is_file())
                self.results[key] = (done, text if done else
                                     f"mpirun -np {size} (a batch) failed with {res.returncode} before "
                                     f"{' '.join(self.jobs[key][1])} ({np} ranks) finished:\n{res.stdout[-6000:]}")

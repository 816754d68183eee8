"""The defaults run where a newcomer starts: one plain process, and mpirun -np 2 (D-SGD on the default graph)."""
import subprocess
import sys

import mpi_harness
from dsgd import launcher

SHORT = ["--steps-per-epoch", "3", "--eval-samples", "200", "--bn-batches", "2"]  # only the length is set


def test_one_plain_process_runs_the_defaults(tmp_path):
    res = subprocess.run([sys.executable, "-m", "dsgd.train", *SHORT, "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=300, cwd=launcher.REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "final test accuracy" in res.stdout


def test_two_ranks_run_the_defaults(tmp_path):
    out = mpi_harness.run_ok(2, ["-m", "dsgd.train", *SHORT, "--out", str(tmp_path)], timeout=300)
    assert "final test accuracy" in out and "2 workers" in out

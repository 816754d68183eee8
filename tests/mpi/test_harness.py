"""The multi-rank harness itself: real ranks agree, and one failing rank fails the job promptly."""
import time

import pytest

import mpi_harness


@pytest.mark.parametrize("np", [1, 2, 3, 8])
def test_ranks_agree_on_allreduce(np):
    out = mpi_harness.run_ok(np, [mpi_harness.program("smoke_allreduce.py")], timeout=60)
    assert f"smoke ok {np}" in out


def test_failing_rank_aborts_the_job_promptly():
    t0 = time.monotonic()
    res = mpi_harness.run(3, [mpi_harness.program("fail_on_rank1.py")], timeout=60)
    assert res.returncode != 0
    assert "deliberate failure on rank 1" in res.stdout
    assert time.monotonic() - t0 < 30

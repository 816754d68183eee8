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


def test_a_batch_gives_each_program_its_own_world_and_output_and_a_failure_fails_what_did_not_finish():
    batch = mpi_harness.Batch({
        "first": (3, [mpi_harness.program("smoke_allreduce.py")]),
        "two": (2, [mpi_harness.program("smoke_allreduce.py")]),  # on 2 of the job's 3 ranks, a world of 2
        "one": (1, [mpi_harness.program("smoke_allreduce.py")]),
        "fails": (3, [mpi_harness.program("fail_on_rank1.py")]),
        "after": (3, [mpi_harness.program("smoke_allreduce.py")]),
    }, timeout=60)
    assert "smoke ok 3" in batch.output("first")
    assert "smoke ok 2" in batch.output("two") and "smoke ok 1" in batch.output("one")
    for key in ("fails", "after"):
        with pytest.raises(AssertionError, match="deliberate failure on rank 1"):
            batch.output(key)

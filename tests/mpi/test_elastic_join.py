"""Replacements under real ranks: in a job of 3 ranks x 2 workers started with replace=True, rank 1 is
killed (kill -9) at step 4; the survivors redo the step, start the script again (MPI_Comm_spawn) and
the new process joins with its neighbour's state at step 5; that replacement is killed in turn at
step 7 and another takes its place at step 8. Every process alive at the end must hold the four
changes of membership and parameters equal, bit for bit, to an in-process run that makes the same
changes by hand (tests/mpi/programs/elastic_join.py, elastic_join_reference.py)."""
import time

import pytest

import mpi_harness
from dsgd import launcher

P = mpi_harness.program

@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    stamp = tmp_path_factory.mktemp("elastic-join") / "kill"
    t0 = time.monotonic()
    try:
        res = launcher.execute(mpi_harness.with_ft(3, [P("elastic_join.py"), "--ranks", "3", "--kill", "r1@4,j1@7",
                                                      "--stamp", str(stamp)], replacements=True),
                               timeout=150, cwd=mpi_harness.REPO)
    except TimeoutError as e:
        raise AssertionError(str(e)) from None
    return res, time.monotonic() - t0


def test_a_replacement_joins_after_each_kill_and_the_job_finishes_equal_to_the_reference(joined):
    res, seconds = joined
    ok = [x for x in res.stdout.splitlines() if x.startswith("elastic join ok")]
    assert ok == ["elastic join ok: dsgd, 2 kill(s), 2 replacement(s), 3 ranks at the end (r0 r2 j2), "
                  "parameters bit for bit the reference's"], res.stdout[-6000:]
    assert res.returncode == 0, res.stdout[-6000:]
    print(f"elastic join job: {seconds:.1f}s wall")


def test_each_loss_and_each_join_is_one_line_from_rank_0(joined):
    res, _ = joined
    lines = [x for x in res.stdout.splitlines() if x.startswith("elastic: step ")]
    # logged as they happen, then listed again at the end from rank 0's opt.membership
    changes = list(dict.fromkeys(lines))
    assert len(lines) == 8 and len(changes) == 4, res.stdout[-6000:]
    assert changes[0].startswith("elastic: step 4: lost rank 1 (workers 2, 3); 6 -> 4 workers, topology ring, ")
    assert changes[1].startswith("elastic: step 5: rank 2 joined (workers 4, 5); 4 -> 6 workers, topology ring, "
                                 "state from rank 1, joined in "), changes[1]
    assert changes[2].startswith("elastic: step 7: lost rank 2 (workers 4, 5); 6 -> 4 workers, topology ring, ")
    assert changes[3].startswith("elastic: step 8: rank 2 joined (workers 4, 5); 4 -> 6 workers, topology ring, "
                                 "state from rank 1, joined in "), changes[3]


def test_each_replacement_starts_at_the_jobs_step_as_the_last_rank(joined):
    res, _ = joined
    starts = sorted(x.split(", ")[0] for x in res.stdout.splitlines() if x.startswith("j") and " joined as " in x)
    assert starts == ["j1: joined as rank 2 of 3 at step 5", "j2: joined as rank 2 of 3 at step 8"], res.stdout[-6000:]

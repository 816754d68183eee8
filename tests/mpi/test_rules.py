"""Each rule under real mpirun equals a plain numpy implementation of its recursion (tests/mpi/programs/lsq.py):
one worker per rank and two, on both backends, and every worker in one process. The trainer ends bit
for bit alike on any layout (tests/mpi/test_trainer_layouts.py), so more world sizes prove no more."""
import pytest

import mpi_harness

LAYOUTS = [(4, 1, "mpi,torch"), (2, 2, "mpi,torch"), (1, 4, "self")]


@pytest.fixture(scope="module")
def jobs():
    return mpi_harness.Batch({(np_, k, b): (np_, [mpi_harness.program("rule_oracle.py"), "--backends", b,
                                                  "--workers-per-rank", str(k)]) for np_, k, b in LAYOUTS},
                             timeout=400)


@pytest.mark.parametrize("np_, k, backends", LAYOUTS)
def test_rules_match_their_numpy_recursions(jobs, np_, k, backends):
    assert "rules ok" in jobs.output((np_, k, backends))

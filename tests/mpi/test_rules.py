"""Each rule under real mpirun equals a plain numpy implementation of its recursion (tests/mpi/programs/lsq.py):
one worker per rank and two, on both backends, and every worker in one process. The trainer ends bit
for bit alike on any layout (tests/mpi/test_trainer_layouts.py), so more world sizes prove no more."""
import pytest

import mpi_harness


@pytest.mark.parametrize("np_, k, backends", [
    (4, 1, "mpi,torch"), (2, 2, "mpi,torch"), (1, 4, "self"),
])
def test_rules_match_their_numpy_recursions(np_, k, backends):
    out = mpi_harness.run_ok(np_, [mpi_harness.program("rule_oracle.py"), "--backends", backends,
                                   "--workers-per-rank", str(k)], timeout=300)
    assert "rules ok" in out

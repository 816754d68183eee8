"""Each rule under real mpirun equals a plain numpy implementation of its recursion (tests/mpi/programs/lsq.py)."""
import pytest

import mpi_harness


@pytest.mark.parametrize("np_, k, backends", [
    (2, 1, "mpi,torch"), (4, 1, "mpi,torch"), (3, 1, "mpi"), (8, 1, "mpi"), (2, 2, "mpi,torch"), (1, 4, "self"),
])
def test_rules_match_their_numpy_recursions(np_, k, backends):
    out = mpi_harness.run_ok(np_, [mpi_harness.program("rule_oracle.py"), "--backends", backends,
                                   "--workers-per-rank", str(k)], timeout=300)
    assert "rules ok" in out

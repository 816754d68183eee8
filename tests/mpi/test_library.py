"""The library under real mpirun: each rank's own loop with `dsgd.DecentralizedOptimizer` follows the
numpy recursions on both backends and with two workers per rank, and local SGD through the API
equals PyTorch's PeriodicModelAverager (tests/mpi/programs/library_oracle.py)."""
import pytest

import mpi_harness

P = mpi_harness.program
JOBS = {"4 x 1": (4, [P("library_oracle.py"), "--backends", "mpi,torch", "--workers-per-rank", "1"]),
        "2 x 2": (2, [P("library_oracle.py"), "--backends", "mpi,torch", "--workers-per-rank", "2"]),
        "peer": (4, [P("library_oracle.py"), "--peer"])}


@pytest.fixture(scope="module")
def jobs():
    return mpi_harness.Batch(JOBS, timeout=300)


@pytest.mark.parametrize("layout, workers", [("4 x 1", 4), ("2 x 2", 4)])
def test_rules_through_the_api_follow_their_numpy_recursions_on_real_ranks(jobs, layout, workers):
    assert f"library oracles ok: 16 rule x backend runs of 25 steps, {workers} workers" in jobs.output(layout)


@pytest.mark.parametrize("layout, workers", [("4 x 1", 4), ("2 x 2", 4)])
def test_the_outer_rules_identities_hold_on_real_ranks_on_both_backends(jobs, layout, workers):
    """Streaming with one fragment, no delay and alpha 1 is DiLoCo and SPARTA with every coordinate is D-SGD,
    bit for bit; DiLoCo with plain outer SGD at lr 1 is local SGD to round-off."""
    assert f"outer identities ok: 6 identity x backend runs, {workers} workers" in jobs.output(layout)


def test_local_sgd_through_the_api_equals_pytorchs_periodic_model_averager(jobs):
    assert "periodic averager peer ok: 18 steps, period 4, 4 ranks" in jobs.output("peer")


def test_clipping_the_averaged_gradient_equals_ddp_whose_user_clips_after_the_allreduce(jobs):
    assert "ddp clip peer ok: 12 steps" in jobs.output("peer")


def test_a_step_the_grad_scaler_skips_on_one_rank_is_skipped_on_every_rank(jobs):
    assert "amp skip agreed: 8 steps, step 3 skipped on every rank" in jobs.output("peer")

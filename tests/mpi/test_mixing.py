"""Mixing under real mpirun: every backend equals W @ X, the byte counters match theory, nothing hangs.

The programs below run several to a job (one job per rank count, mpi_harness.Batch): each is the
same program with the same arguments as on its own, in ranks that started MPI and torch once."""
import pytest

import mpi_harness

P = mpi_harness.program
CONTRACT = [(2, 1), (3, 1), (4, 1), (8, 1), (2, 2), (3, 2)]
STAGED = [(4, 1), (3, 2)]
POLICIES = [(4, 1, "mpi,mpi-staged,torch"), (3, 1, "mpi,mpi-staged,torch"), (2, 2, "mpi,mpi-staged,torch"),
            (1, 4, "self,simulated")]
STEPS = [(4, 1), (3, 2)]
HIERARCHICAL = [(6, 1, "mpi"), (4, 2, "mpi"), (3, 2, "mpi"), (4, 1, "torch")]
JOBS = {
    **{("contract", np_, k): (np_, [P("mix_contract.py"), "--backends", "mpi,torch,simulated",
                                    "--workers-per-rank", str(k)]) for np_, k in CONTRACT},
    **{("ring", b): (5, [P("mix_ring_traffic.py"), "--backend", b]) for b in ("mpi", "torch")},
    **{("time-varying", np_): (np_, [P("mix_random_time_varying.py"), "--steps", "1000"]) for np_ in (4, 5)},
    **{("staged", np_, k): (np_, [P("mix_contract.py"), "--backends", "mpi-staged,simulated",
                                  "--workers-per-rank", str(k)]) for np_, k in STAGED},
    **{("policies", np_, k): (np_, [P("mix_policies.py"), "--backends", b, "--workers-per-rank", str(k)])
       for np_, k, b in POLICIES},
    ("device",): (3, [P("mix_device_standin.py")]),
    **{("steps", np_, k): (np_, [P("mix_steps.py"), "--workers-per-rank", str(k)]) for np_, k in STEPS},
    **{("hierarchical", np_, k, b): (np_, [P("mix_hierarchical.py"), "--workers-per-rank", str(k), "--backend", b])
       for np_, k, b in HIERARCHICAL},
}


@pytest.fixture(scope="module")
def jobs():
    return mpi_harness.Batch(JOBS, timeout=600)


@pytest.mark.parametrize("np_, k", CONTRACT)
def test_mpi_torch_and_simulation_agree_with_dense_reference(jobs, np_, k):
    assert "contract ok" in jobs.output(("contract", np_, k))


@pytest.mark.parametrize("backend", ["mpi", "torch"])
def test_ring_step_moves_twice_the_model_per_rank(jobs, backend):
    out = jobs.output(("ring", backend))
    assert "ring traffic ok" in out and "coalesced ok" in out


@pytest.mark.parametrize("np_", [4, 5])
def test_thousand_random_directed_time_varying_steps_do_not_hang(jobs, np_):
    assert "time-varying ok after 1000 steps" in jobs.output(("time-varying", np_))


@pytest.mark.parametrize("np_, k", STAGED)
def test_host_staged_mpi_path_agrees_with_dense_reference(jobs, np_, k):
    assert "contract ok" in jobs.output(("staged", np_, k))


@pytest.mark.parametrize("np_, k, backends", POLICIES)
def test_every_mixing_policy_over_every_matrix_shape_equals_dense_reference(jobs, np_, k, backends):
    # parameters in flight (overlap) while BatchNorm buffers and same-shape optimizer state are mixed
    assert "policies ok" in jobs.output(("policies", np_, k))


def test_device_memory_reaches_mpi_only_when_ready_and_never_in_a_nonblocking_collective(jobs):
    # CPU stand-in for GPU memory: records stream synchronizations, kernels and MPI calls in order
    assert "device stand-in ok" in jobs.output(("device",))


@pytest.mark.parametrize("np_, k", STEPS)
def test_a_topologys_step_objects_mix_bit_for_bit_like_its_dense_matrices(jobs, np_, k):
    assert "steps ok" in jobs.output(("steps", np_, k))


@pytest.mark.parametrize("np_, k, backend", HIERARCHICAL)
def test_hierarchical_mixing_equals_the_dense_reference_in_every_layout(jobs, np_, k, backend):
    assert "hierarchical ok" in jobs.output(("hierarchical", np_, k, backend))

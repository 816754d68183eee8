"""The same mixing contract on a real GPU; skipped where no CUDA device is visible."""
import pytest
import torch

import mpi_harness

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
P = mpi_harness.program


def test_in_process_policies_on_gpu_memory_equal_dense_reference():
    out = mpi_harness.run_ok(1, [P("mix_policies.py"), "--backends", "self,simulated", "--workers-per-rank", "4",
                                 "--device", "cuda"], timeout=300)
    assert "policies ok" in out


def test_mpi_policies_on_gpu_memory_equal_dense_reference():
    # two ranks may share one GPU for MPI; the library's own CUDA support decides staged or direct
    out = mpi_harness.run_ok(2, [P("mix_policies.py"), "--backends", "mpi,mpi-staged", "--device", "cuda"],
                             timeout=300)
    assert "policies ok" in out

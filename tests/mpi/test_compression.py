"""Compressed mixing under real mpirun: W @ decode(encode(X)) on every backend, payload bytes counted and on the wire."""
import json

import pytest

import mpi_harness

P = mpi_harness.program


# 8 workers as 4 ranks x 2: the 8-node graphs (exponential with peers at distance 1, 2 and 4) on half the
# processes of 8 x 1, with edges both inside and across ranks
MIXING = [(2, 1, "mpi,torch"), (4, 1, "mpi,torch"), (3, 1, "mpi"), (4, 2, "mpi"), (2, 2, "mpi,torch"),
          (1, 4, "self,simulated")]
POWERSGD = [(4, 1, "mpi,torch"), (2, 2, "mpi"), (1, 4, "self")]
# fp16:sum=half: two ranks (bit for bit numpy's float16), four (bit for bit DDP's fp16_compress_hook over
# gloo), two of two workers, and one rank of four (no backend sum: the exact mean)
HALF_SUMS = [(2, 1, "mpi,torch"), (4, 1, "mpi,torch"), (2, 2, "mpi,torch"), (1, 4, "self")]
# several programs to a job, one job per rank count (mpi_harness.Batch)
JOBS = {**{("mixing", np_, k, b): (np_, [P("mix_compressed.py"), "--backends", b, "--workers-per-rank", str(k)])
           for np_, k, b in MIXING},
        **{("powersgd", np_, k, b): (np_, [P("powersgd_oracle.py"), "--backends", b, "--workers-per-rank", str(k)])
           for np_, k, b in POWERSGD},
        **{("half", np_, k, b): (np_, [P("fp16_sum_half.py"), "--backends", b, "--workers-per-rank", str(k)])
           for np_, k, b in HALF_SUMS}}


@pytest.fixture(scope="module")
def jobs():
    return mpi_harness.Batch(JOBS, timeout=600)


@pytest.mark.parametrize("np_, k, backends", MIXING)
def test_compressed_mixing_equals_dense_reference_on_decoded_payloads(jobs, np_, k, backends):
    assert "compressed ok" in jobs.output(("mixing", np_, k, backends))


def test_a_sign_compressed_ring_step_puts_a_32nd_of_the_bytes_on_the_wire():
    # MPI over TCP on loopback, where /proc/net/dev counts what really crossed
    res = mpi_harness.run(4, [P("wire_bytes.py")], timeout=300,
                          env={"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "self,tcp"})
    assert res.returncode == 0, res.stdout[-3000:]
    report = json.loads([line for line in res.stdout.splitlines() if line.startswith("{")][-1])
    for phase in ("dense", "sign"):
        wire, counted = report[phase]["wire_bytes"], report[phase]["counted_bytes"]
        assert counted <= wire < 1.05 * counted, report  # the payload, plus a little framing, and nothing more
    assert 1 / 40 < report["ratio"] < 1 / 28, report


@pytest.mark.parametrize("np_, k, backends", POWERSGD)
def test_powersgd_csgd_matches_its_numpy_recursion(jobs, np_, k, backends):
    assert "powersgd ok" in jobs.output(("powersgd", np_, k, backends))


@pytest.mark.parametrize("np_, k, backends", HALF_SUMS)
def test_fp16_averages_summed_in_half_precision_match_numpy_and_pytorchs_hook(jobs, np_, k, backends):
    assert "fp16 sum=half ok" in jobs.output(("half", np_, k, backends))

"""`python -m dsgd.bench mix --json` under real mpirun: one well-formed report, never a hang.

One tiny run on 3 ranks over the torch backend (the MPI backend is the same code with the communicator
the hand and seam benchmarks run, tests/mpi/test_bench_scale.py). What is asserted is deterministic:
the topologies measured and skipped, each step's kind and its exact bytes. Timings on a shared 2-core
machine are noise, so none is asserted on; the report's arithmetic, the bytes on 4 ranks, the 2-rank skip
of a ring and the usage errors are checked without ranks in tests/unit/test_bench_mix_report.py and
tests/unit/test_bench_arguments.py.
"""
import json

import pytest

import mpi_harness

REPORT_KEYS = {"benchmark", "backend", "world_size", "device", "date", "torch_threads", "warmup", "load_average",
               "results", "skipped", "notes"}
RESULT_KEYS = {"topology", "kind", "numel", "dsgd_s", "raw_s", "ratio", "gbps", "bytes_sent_per_rank", "repeats"}
# on 3 nodes a ring and the exponential graph link everyone (W = 1/3: one allreduce of the buffer); the
# one-peer exponential graph sends the buffer to one peer per step; a torus needs 9 nodes
KINDS = {"complete": "average", "ring": "average", "exponential": "average", "one-peer-exponential": "sparse",
         "identity": "identity"}
BUFFERS_SENT = {"average": 1, "sparse": 1, "identity": 0}
NUMELS = [8, 3]
PIPELINED = [(3, 1), (4, 2)]
JOBS = {"mix": (3, ["-m", "dsgd.bench", "mix", "--backend", "torch", "--numel", str(NUMELS[0]), "--numel",
                    str(NUMELS[1]), "--repeats", "1", "--warmup", "0", "--json"]),
        **{("pipelined", np_, threads): (np_, [mpi_harness.program("mix_pipelined_bitwise.py"), "--threads",
                                               str(threads)]) for np_, threads in PIPELINED}}


@pytest.fixture(scope="module")
def jobs():
    return mpi_harness.Batch(JOBS, timeout=400)  # all in one mpirun


def test_three_ranks_over_torch_measure_every_topology_but_the_torus_at_every_size(jobs):
    out = jobs.output("mix")
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(reports) == 1, f"expected one JSON object from rank 0:\n{out[-4000:]}"
    report = reports[0]
    assert set(report) == REPORT_KEYS
    assert (report["benchmark"], report["backend"], report["world_size"], report["device"], report["warmup"]) == \
        ("mix", "torch", 3, "cpu", 0)
    assert [s["topology"] for s in report["skipped"]] == ["torus"]
    assert f"skipped torus: {report['skipped'][0]['reason']}" in report["notes"]
    assert [(r["topology"], r["numel"]) for r in report["results"]] == \
        [(topology, numel) for topology in KINDS for numel in NUMELS]
    for r in report["results"]:
        assert set(r) == RESULT_KEYS, r
        assert (r["kind"], r["repeats"]) == (KINDS[r["topology"]], 1)
        assert r["bytes_sent_per_rank"] == BUFFERS_SENT[r["kind"]] * 4 * r["numel"]
        assert r["dsgd_s"] > 0
        if r["kind"] == "identity":
            assert r["raw_s"] == 0 and r["ratio"] is None
        else:
            assert r["raw_s"] > 0 and r["ratio"] > 0 and r["gbps"] > 0
            assert r["ratio"] == pytest.approx(r["dsgd_s"] / r["raw_s"])
    assert any(note.startswith("gbps") for note in report["notes"])


@pytest.mark.parametrize("np_, threads", PIPELINED)
def test_pipelined_sparse_mixing_is_bitwise_the_unchunked_step(jobs, np_, threads):
    # The pipelined combine was added to Mixer for this benchmark; it must not change results.
    out = jobs.output(("pipelined", np_, threads))
    assert "pipelined bitwise ok" in out

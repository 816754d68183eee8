"""`python -m dsgd.bench mix --json` under real mpirun: one well-formed report, never a hang.

Checks the schema only; timings on a shared 2-core machine are noise, so none is asserted on.
"""
import json

import pytest

import mpi_harness

TOPOLOGIES = ["complete", "ring", "torus", "exponential", "one-peer-exponential", "identity"]
RESULT_KEYS = {"topology", "kind", "numel", "dsgd_s", "raw_s", "ratio", "gbps", "bytes_sent_per_rank", "repeats"}
NUMEL = 1000


def run_bench(np_, *extra):
    out = mpi_harness.run_ok(np_, ["-m", "dsgd.bench", "mix", "--numel", str(NUMEL), "--repeats", "3",
                                   "--warmup", "1", "--json", *extra], timeout=240)
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(reports) == 1, f"expected one JSON object from rank 0:\n{out[-4000:]}"
    return reports[0]


def check_result(r, world_size):
    assert set(r) == RESULT_KEYS, r
    assert r["numel"] == NUMEL and r["repeats"] == 3
    assert r["dsgd_s"] > 0
    buffer_bytes = 4 * NUMEL
    if r["kind"] == "identity":
        assert r["raw_s"] == 0 and r["ratio"] is None and r["bytes_sent_per_rank"] == 0
        return
    assert r["raw_s"] > 0 and r["ratio"] > 0 and r["gbps"] > 0
    assert r["ratio"] == pytest.approx(r["dsgd_s"] / r["raw_s"])
    if r["kind"] == "average":
        assert r["bytes_sent_per_rank"] == buffer_bytes
    else:
        assert r["bytes_sent_per_rank"] % buffer_bytes == 0
        assert 1 <= r["bytes_sent_per_rank"] // buffer_bytes < world_size


@pytest.mark.parametrize("np_, backend", [(3, "mpi"), (4, "mpi"), (3, "torch")])
def test_report_covers_every_topology(np_, backend):
    report = run_bench(np_, "--backend", backend)
    assert {"benchmark", "backend", "world_size", "device", "date", "results", "notes"} <= set(report)
    assert (report["benchmark"], report["backend"], report["world_size"], report["device"]) == \
        ("mix", backend, np_, "cpu")
    measured = [r["topology"] for r in report["results"]]
    skipped = [s["topology"] for s in report["skipped"]]
    assert sorted(measured + skipped) == sorted(TOPOLOGIES)
    assert "torus" in skipped  # needs rows, cols >= 3: not defined on 3 or 4 ranks
    for name in skipped:
        assert any(name in note for note in report["notes"])
    for r in report["results"]:
        check_result(r, np_)
    kinds = {r["topology"]: r["kind"] for r in report["results"]}
    assert kinds["complete"] == "average" and kinds["identity"] == "identity"
    assert kinds["one-peer-exponential"] == "sparse"
    assert any(note.startswith("gbps") for note in report["notes"])


def test_several_sizes_and_chosen_topologies():
    report = run_bench(2, "--numel", "7", "--topology", "ring", "complete")
    assert [s["topology"] for s in report["skipped"]] == ["ring"]  # a ring needs 3 nodes
    assert [(r["topology"], r["numel"]) for r in report["results"]] == [("complete", NUMEL), ("complete", 7)]


def test_unknown_topology_is_a_usage_error():
    res = mpi_harness.run(2, ["-m", "dsgd.bench", "mix", "--topology", "moebius"], timeout=120)
    assert res.returncode != 0 and "unknown topology 'moebius'" in res.stdout


@pytest.mark.parametrize("np_, threads", [(3, 1), (4, 2)])
def test_pipelined_sparse_mixing_is_bitwise_the_unchunked_step(np_, threads):
    # The pipelined combine was added to Mixer for this benchmark; it must not change results.
    out = mpi_harness.run_ok(np_, [mpi_harness.program("mix_pipelined_bitwise.py"), "--threads", str(threads)],
                             timeout=240)
    assert "pipelined bitwise ok" in out

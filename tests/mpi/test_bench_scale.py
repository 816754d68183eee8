"""`dsgd.bench seam` and `dsgd.bench hand` under real mpirun: well-formed reports, results that agree.

Timings on a shared 2-core machine are noise, so none is asserted on; what is asserted is the
schema, that planning from a step reads what planning from the matrix reads, and that the
hand-written step computes what dsgd's computes.
"""
import json

import mpi_harness


def report_of(out):
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(reports) == 1, out[-4000:]
    return reports[0]


def test_seam_reports_planning_and_mixing_per_worker_count():
    out = mpi_harness.run_ok(2, ["-m", "dsgd.bench", "seam", "--workers", "32", "64", "--plan-ranks", "4",
                                 "--numel", "50", "--repeats", "2", "--json"], timeout=240)
    report = report_of(out)
    assert report["benchmark"] == "seam" and report["world_size"] == 2
    rows = [(r["topology"], r["n"]) for r in report["results"]]
    assert rows == [("ring", 32), ("ring", 64), ("one-peer-exponential", 32), ("one-peer-exponential", 64)]
    for r in report["results"]:
        assert r["workers_per_rank"] == r["n"] // 4
        for key in ("cold_dense_s", "cold_step_s", "cached_dense_s", "cached_step_s", "mixer_s",
                    "numpy_sparse_s", "numpy_dense_s"):
            assert r[key] > 0, key
        assert r["mixer_per_worker_us"] == r["mixer_s"] / (r["n"] // 2) * 1e6
    assert set(report["growth"]) == {"ring", "one-peer-exponential"}


def test_seam_refuses_worker_counts_the_ranks_do_not_divide():
    res = mpi_harness.run(2, ["-m", "dsgd.bench", "seam", "--workers", "33"], timeout=120)
    assert res.returncode != 0 and "--workers 33 is not a multiple" in res.stdout


def test_hand_written_step_computes_what_dsgd_computes():
    out = mpi_harness.run_ok(3, ["-m", "dsgd.bench", "hand", "--numel", "1000", "--repeats", "2", "--profile", "5",
                                 "--json"], timeout=240)
    report = report_of(out)
    assert [r["topology"] for r in report["results"]] == ["ring", "one-peer-exponential", "complete"]
    for r in report["results"]:
        assert r["dsgd_s"] > 0 and r["hand_s"] > 0 and r["exchange_s"] > 0
        assert r["hand_ratio"] == r["dsgd_s"] / r["hand_s"]
        assert r["max_rel_diff"] < 1e-6, r   # same weighted sum, float32 rounding apart
        shares = [share for _, share in r["profile"]]
        assert 0 < len(shares) <= 8 and shares == sorted(shares, reverse=True) and sum(shares) <= 1 + 1e-9

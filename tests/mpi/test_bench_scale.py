"""`dsgd.bench seam` and `dsgd.bench hand` under real mpirun, once each on tiny sizes: well-formed reports,
results that agree.

Timings on a shared 2-core machine are noise, so none is asserted on; what is asserted is the schema,
the layout of workers over ranks, and that the hand-written step computes what dsgd's computes. The
reports' arithmetic (per-worker figures, growth, ratios, profile shares) and seam's usage errors are
checked without ranks in tests/unit/test_bench_{seam,hand}_report.py and test_bench_arguments.py.
"""
import json

import pytest

import mpi_harness

JOBS = {"seam": (2, ["-m", "dsgd.bench", "seam", "--workers", "8", "16", "--plan-ranks", "4", "--numel", "10",
                     "--repeats", "1", "--warmup", "0", "--json"]),
        "hand": (3, ["-m", "dsgd.bench", "hand", "--numel", "100", "--repeats", "1", "--warmup", "0", "--profile", "1",
                     "--json"])}


@pytest.fixture(scope="module")
def jobs():
    return mpi_harness.Batch(JOBS, timeout=300)  # both in one mpirun


def report_of(out):
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(reports) == 1, out[-4000:]
    return reports[0]


def test_seam_reports_planning_and_mixing_per_worker_count(jobs):
    # --plan-ranks 4 on 2 ranks: planning's workers per rank (n / 4) and mixing's (n / 2) differ
    report = report_of(jobs.output("seam"))
    assert (report["benchmark"], report["world_size"], report["numel"]) == ("seam", 2, 10)
    rows = [(r["topology"], r["n"]) for r in report["results"]]
    assert rows == [("ring", 8), ("ring", 16), ("one-peer-exponential", 8), ("one-peer-exponential", 16)]
    for r in report["results"]:
        assert (r["plan_ranks"], r["workers_per_rank"]) == (4, r["n"] // 4)
        for key in ("cold_dense_s", "cold_step_s", "cached_dense_s", "cached_step_s", "mixer_s",
                    "numpy_sparse_s", "numpy_dense_s"):
            assert r[key] > 0, key
        assert r["mixer_per_worker_us"] == r["mixer_s"] / (r["n"] // 2) * 1e6
    assert set(report["growth"]) == {"ring", "one-peer-exponential"}
    assert all(g["n"] == [8, 16] for g in report["growth"].values())


def test_hand_written_step_computes_what_dsgd_computes(jobs):
    report = report_of(jobs.output("hand"))
    assert report["world_size"] == 3
    assert [(r["topology"], r["kind"], r["numel"]) for r in report["results"]] == \
        [("ring", "average", 100), ("one-peer-exponential", "sparse", 100), ("complete", "average", 100)]
    for r in report["results"]:
        assert r["dsgd_s"] > 0 and r["hand_s"] > 0 and r["exchange_s"] > 0
        assert r["hand_ratio"] == r["dsgd_s"] / r["hand_s"]
        assert r["max_rel_diff"] < 1e-6, r   # same weighted sum, float32 rounding apart
        shares = [share for _, share in r["profile"]]
        assert 0 < len(shares) <= 8 and shares == sorted(shares, reverse=True) and sum(shares) <= 1 + 1e-9

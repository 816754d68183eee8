"""What `python -m dsgd.bench seam` reports, computed from recorded rows of a 2-rank run with --plan-ranks 4
(tests/data/bench/seam.json): the per-worker figures and how each cost grows with n.
The tiny real run is tests/mpi/test_bench_scale.py."""
import copy
import json
from pathlib import Path

import pytest

from dsgd.bench.reports import seam_growth, seam_per_worker

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "data" / "bench" / "seam.json").read_text())


def rows_with_per_worker() -> list[dict]:
    rows = copy.deepcopy(RECORDED["rows"])
    for row in rows:
        seam_per_worker(row, RECORDED["world_size"])
    return rows


def test_the_mixer_is_charged_per_worker_of_one_rank_and_numpy_per_worker_of_all_n():
    ring32 = rows_with_per_worker()[0]
    assert (ring32["topology"], ring32["n"]) == ("ring", 32)
    assert ring32["mixer_per_worker_us"] == 0.0004813 / (32 // 2) * 1e6  # 16 workers on each of 2 ranks
    assert ring32["numpy_sparse_per_worker_us"] == 3.558e-05 / 32 * 1e6
    assert ring32["numpy_dense_per_worker_us"] == 5.472e-05 / 32 * 1e6


def test_a_row_without_numpy_timings_gets_only_the_mixer_figure():
    row = {"topology": "ring", "n": 4096, "mixer_s": 0.5}  # another rank's row, or n above --dense-limit
    seam_per_worker(row, 4)
    assert row == {"topology": "ring", "n": 4096, "mixer_s": 0.5, "mixer_per_worker_us": 0.5 / 1024 * 1e6}


def test_growth_compares_each_topologys_last_n_with_its_first():
    growth = seam_growth(rows_with_per_worker())
    assert list(growth) == ["ring", "one-peer-exponential"]
    ring = growth["ring"]
    assert ring["n"] == [32, 64]
    assert ring["cached_step_s"] == 1.272e-06 / 1.943e-06
    assert ring["cached_dense_s"] == 1.311e-05 / 5.35e-06
    assert ring["cold_step_per_worker"] == pytest.approx((0.0001353 / 16) / (7.868e-05 / 8), rel=1e-12)
    assert ring["mixer_per_worker"] == pytest.approx((0.008724 / 32) / (0.0004813 / 16), rel=1e-12)
    ope = growth["one-peer-exponential"]
    assert ope["n"] == [32, 64]
    assert ope["cached_step_s"] == 5.027e-07 / 7.594e-07
    assert ope["cached_dense_s"] == 1.202e-05 / 3.416e-06
    assert ope["cold_step_per_worker"] == pytest.approx((0.0001122 / 16) / (6.724e-05 / 8), rel=1e-12)
    assert ope["mixer_per_worker"] == pytest.approx((0.0009066 / 32) / (0.008287 / 16), rel=1e-12)

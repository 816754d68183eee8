"""What `python -m dsgd.bench agree` reports, computed from a recorded 2-rank run
(tests/data/bench/agree.json: 5 windows of 2 steps per arm). With 5 windows every median and quartile
is one recorded window, so each expectation below names the window it comes from.
The tiny real run is tests/mpi/test_bench_agree.py."""
import json
from pathlib import Path

import numpy as np
import pytest

from dsgd.bench.reports import agree_arms, agree_row, agree_topology

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "data" / "bench" / "agree.json").read_text())
RESULT_KEYS = {"model", "topology", "step_s", "agree_s", "agree_in_step_s", "agree_ratio", "agree_in_step_ratio",
               "slowdown", "slowdown_quartiles"}


@pytest.fixture(scope="module")
def row():
    r = RECORDED
    times, in_step, alone = (np.array(r[key]) for key in ("times", "in_step", "alone"))
    return agree_row(r["model"], r["topology"], r["arms"], times, in_step, alone, r["window"])


def test_arms_are_agreed_none_every_K_and_overlapped():
    assert agree_arms(3) == ["agreed", "none", "every-3", "overlapped"]
    assert agree_arms(8)[2] == "every-8"


def test_the_topology_is_complete_below_three_ranks_and_a_ring_from_three():
    assert [agree_topology(n) for n in (1, 2, 3, 4)] == ["complete", "complete", "ring", "ring"]


def test_a_result_has_exactly_the_documented_keys(row):
    assert set(row) == RESULT_KEYS
    assert (row["model"], row["topology"]) == ("mlp", "complete")


def test_step_time_per_arm_is_the_median_window_over_the_window_length(row):
    assert list(row["step_s"]) == ["agreed", "none", "every-3", "overlapped"]
    assert row["step_s"] == {"agreed": 0.01605 / 2, "none": 0.01617 / 2, "every-3": 0.01579 / 2,
                             "overlapped": 0.03672 / 2}


def test_the_agreement_alone_is_the_median_repetition_and_inside_the_step_the_median_window(row):
    assert row["agree_s"] == (2.048e-05 + 2.227e-05) / 2  # 10 repetitions: the mean of the middle two
    assert row["agree_in_step_s"] == 0.004077


def test_ratios_divide_by_the_none_arm_and_the_agreed_arm(row):
    assert row["agree_ratio"] == pytest.approx((2.048e-05 + 2.227e-05) / 2 / (0.01617 / 2), rel=1e-12)
    assert row["agree_in_step_ratio"] == pytest.approx(0.004077 / (0.01605 / 2), rel=1e-12)


def test_slowdown_is_the_median_of_paired_window_ratios_with_quartiles(row):
    # windows ranked by (arm / none): agreed 3 1 4 0 2, every-3 1 3 2 0 4, overlapped 1 2 0 3 4
    assert list(row["slowdown"]) == list(row["slowdown_quartiles"]) == ["agreed", "every-3", "overlapped"]
    assert row["slowdown"] == {"agreed": 0.00312 / 0.003287,   # window 4
                               "every-3": 0.01579 / 0.01617,   # window 2
                               "overlapped": 0.0162 / 0.01562}  # window 0
    assert row["slowdown_quartiles"] == {"agreed": [0.04429 / 0.04792, 0.01605 / 0.01562],
                                         "every-3": [0.03283 / 0.04506, 0.01574 / 0.01562],
                                         "overlapped": [0.01667 / 0.01617, 0.06392 / 0.04506]}
    for arm, (q25, q75) in row["slowdown_quartiles"].items():
        assert q25 <= row["slowdown"][arm] <= q75

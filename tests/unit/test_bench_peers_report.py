"""What `python -m dsgd.bench peers` reports, computed from a recorded 2-rank run (tests/data/bench/peers.json:
3 windows of H = 4 steps per side). With 3 windows a median is one recorded window and a quartile the
midpoint of two. The tiny real run (bytes against the model's size) is tests/mpi/test_bench_more.py."""
import json
from pathlib import Path

import numpy as np
import pytest

from dsgd.bench.reports import PEERS_COMPARISONS, PEERS_SIDES, peers_comparisons, peers_results

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "data" / "bench" / "peers.json").read_text())
SIDES = ["dsgd-local-mpi", "dsgd-local-torch", "torch-averager", "dsgd-csgd-mpi", "dsgd-csgd-torch", "torch-ddp",
         "dsgd-csgd-fp16-mpi", "dsgd-csgd-fp16-half-mpi", "dsgd-csgd-fp16-half-torch", "torch-ddp-fp16",
         "dsgd-csgd-powersgd-mpi"]
TIMES = np.array(RECORDED["times"])


def recorded_results() -> dict:
    r = RECORDED
    rows = peers_results(r["names"], TIMES, r["world_size"], r["batch_size"], r["local_steps"], r["sent"],
                         r["steps_done"])
    return {row["name"]: row for row in rows}


def test_sides_take_turns_in_the_documented_order():
    assert list(PEERS_SIDES) == SIDES == RECORDED["names"]


def test_each_comparison_pairs_a_dsgd_side_with_its_pytorch_baseline_and_target():
    assert [(c[1], c[2], c[3]) for c in PEERS_COMPARISONS] == [
        ("dsgd-local-mpi", "torch-averager", 1.0), ("dsgd-local-torch", "torch-averager", 1.0),
        ("dsgd-csgd-mpi", "torch-ddp", 1.1), ("dsgd-csgd-torch", "torch-ddp", 1.1),
        ("dsgd-csgd-fp16-mpi", "torch-ddp-fp16", 1.1), ("dsgd-csgd-fp16-half-mpi", "torch-ddp-fp16", 1.1),
        ("dsgd-csgd-fp16-half-torch", "torch-ddp-fp16", 1.1), ("dsgd-csgd-powersgd-mpi", "torch-ddp", 1.1)]


@pytest.mark.parametrize("side, median_window", [
    ("dsgd-local-mpi", 0.3256), ("dsgd-local-torch", 0.3171), ("torch-averager", 0.3175),
    ("dsgd-csgd-mpi", 0.4913), ("dsgd-csgd-torch", 0.3664), ("torch-ddp", 0.2504),
    ("dsgd-csgd-fp16-mpi", 0.4954), ("dsgd-csgd-fp16-half-mpi", 0.4972), ("dsgd-csgd-fp16-half-torch", 0.3639),
    ("torch-ddp-fp16", 0.2405), ("dsgd-csgd-powersgd-mpi", 0.3601)])
def test_step_time_is_the_median_window_over_H_and_samples_per_second_follow(side, median_window):
    row = recorded_results()[side]
    assert row["step_s"] == median_window / 4
    assert row["samples_per_s"] == pytest.approx(2 * 32 / (median_window / 4), rel=1e-12)


def test_results_keep_turn_order_and_only_dsgd_sides_count_bytes():
    rows = recorded_results()
    assert list(rows) == SIDES
    assert {name for name, row in rows.items() if "bytes_per_step" in row} == set(RECORDED["sent"])
    assert all(set(rows[name]) == {"name", "step_s", "samples_per_s"} for name in
               ("torch-averager", "torch-ddp", "torch-ddp-fp16"))


def test_bytes_per_step_divide_what_a_worker_sent_by_the_steps_taken():
    sent = {name: row["bytes_per_step"] for name, row in recorded_results().items() if "bytes_per_step" in row}
    assert sent == {"dsgd-local-mpi": 6746272 / 16, "dsgd-local-torch": 6746272 / 16,
                    "dsgd-csgd-mpi": 26985088 / 16, "dsgd-csgd-torch": 26985088 / 16,
                    "dsgd-csgd-fp16-mpi": 13492544 / 16, "dsgd-csgd-fp16-half-mpi": 13492544 / 16,
                    "dsgd-csgd-fp16-half-torch": 13492544 / 16, "dsgd-csgd-powersgd-mpi": 500736 / 16}
    assert sent["dsgd-csgd-fp16-mpi"] == sent["dsgd-csgd-mpi"] / 2     # half the bytes of float32
    assert sent["dsgd-csgd-powersgd-mpi"] < sent["dsgd-csgd-mpi"] / 4


def test_a_comparison_is_the_median_of_paired_window_ratios_with_quartiles():
    # windows ranked by (dsgd side / baseline): local-mpi 0 2 1, local-torch 0 2 1, csgd-mpi 2 0 1,
    # csgd-torch 2 0 1, fp16 0 2 1, fp16 half over MPI 2 1 0, over gloo 0 2 1, powersgd 2 0 1
    t = TIMES
    w = [{name: t[k, j] for j, name in enumerate(SIDES)} for k in range(3)]

    def ratio(k, mine, theirs):
        return w[k][mine] / w[k][theirs]
    expected = [  # (median window, the two windows below it and above it)
        ("dsgd-local-mpi", "torch-averager", 2, (0, 2), (2, 1)),
        ("dsgd-local-torch", "torch-averager", 2, (0, 2), (2, 1)),
        ("dsgd-csgd-mpi", "torch-ddp", 0, (2, 0), (0, 1)),
        ("dsgd-csgd-torch", "torch-ddp", 0, (2, 0), (0, 1)),
        ("dsgd-csgd-fp16-mpi", "torch-ddp-fp16", 2, (0, 2), (2, 1)),
        ("dsgd-csgd-fp16-half-mpi", "torch-ddp-fp16", 1, (2, 1), (1, 0)),
        ("dsgd-csgd-fp16-half-torch", "torch-ddp-fp16", 2, (0, 2), (2, 1)),
        ("dsgd-csgd-powersgd-mpi", "torch-ddp", 0, (2, 0), (0, 1)),
    ]
    comparisons = peers_comparisons(SIDES, TIMES)
    assert len(comparisons) == len(expected)
    for c, (mine, theirs, mid, low, high) in zip(comparisons, expected):
        assert set(c) == {"what", "dsgd", "baseline", "ratio", "ratio_quartiles", "target", "met"}
        assert (c["dsgd"], c["baseline"]) == (mine, theirs)
        assert c["ratio"] == ratio(mid, mine, theirs)
        q25 = (ratio(low[0], mine, theirs) + ratio(low[1], mine, theirs)) / 2
        q75 = (ratio(high[0], mine, theirs) + ratio(high[1], mine, theirs)) / 2
        assert c["ratio_quartiles"] == pytest.approx([q25, q75], rel=1e-12)
        assert c["met"] is False  # on this loaded machine every dsgd side was slower than its target allows


def test_a_ratio_equal_to_its_target_is_met_and_one_above_is_not():
    even = peers_comparisons(SIDES, np.ones((1, len(SIDES))))
    assert [(c["ratio"], c["met"]) for c in even] == [(1.0, True)] * 8
    slow = np.ones((1, len(SIDES)))
    slow[0, SIDES.index("dsgd-csgd-mpi")] = 1.2  # 1.2 > 1.1
    assert [c["met"] for c in peers_comparisons(SIDES, slow)] == [True, True, False, True, True, True, True, True]


def test_only_comparisons_whose_two_sides_were_timed_are_reported():
    names = ["dsgd-csgd-mpi", "torch-ddp", "dsgd-csgd-fp16-half-torch", "torch-ddp-fp16"]
    times = np.array([[2.0, 1.0, 3.0, 2.0]])
    assert [(c["dsgd"], c["baseline"], c["ratio"]) for c in peers_comparisons(names, times)] == [
        ("dsgd-csgd-mpi", "torch-ddp", 2.0), ("dsgd-csgd-fp16-half-torch", "torch-ddp-fp16", 1.5)]

"""What `python -m dsgd.bench hand` reports, computed from a recorded 3-rank run (tests/data/bench/hand.json):
the result rows and the profile's shares. That the hand-written step computes what dsgd's computes
needs real ranks: tests/mpi/test_bench_scale.py."""
import json
import random
from pathlib import Path

import numpy as np
import pytest

from dsgd.bench.reports import hand_row, profile_shares

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "data" / "bench" / "hand.json").read_text())
ROW_KEYS = {"topology", "kind", "numel", "dsgd_s", "hand_s", "hand_form", "hand_forms_s", "exchange_s",
            "exchange_small_pages_s", "dsgd_small_pages_s", "hand_ratio", "hand_ratio_paired", "hand_ratio_quartiles",
            "exchange_ratio", "small_pages_ratio", "previous_ratio", "max_rel_diff", "repeats"}


@pytest.mark.parametrize("topology, medians", [
    # the median (middle) of the three recorded repetitions, column by column (reports.HAND_COLUMNS)
    ("ring", (0.005869, 0.003911, 0.01154, 0.003088, 0.0116, 0.003845, 0.006436)),
    ("one-peer-exponential", (0.004525, 0.00135, 0.008106, 0.0003819, 0.0005054, 0.005909, 0.002875)),
    ("complete", (0.01023, 0.01181, 0.004666, 0.0003904, 0.01179, 0.0004271, 0.003338)),
])
def test_a_row_holds_median_times_and_dsgd_over_each_baseline(topology, medians):
    dsgd_s, in_place_s, expression_s, float64_s, exchange_s, small_s, dsgd_small_s = medians
    r = next(r for r in RECORDED["rows"] if r["topology"] == topology)
    row = hand_row(topology, r["kind"], r["numel"], np.array(r["times"]), r["max_rel_diff"], r["repeats"])
    assert set(row) == ROW_KEYS
    assert (row["topology"], row["kind"], row["numel"], row["repeats"]) == (topology, r["kind"], 1000, 3)
    assert row["hand_forms_s"] == {"in_place": in_place_s, "expression": expression_s, "float64_weights": float64_s}
    # the reference is the fastest hand-written step: in this noisy tiny run, the former one in all three
    assert (row["hand_form"], row["hand_s"]) == ("float64_weights", float64_s)
    assert (row["dsgd_s"], row["exchange_s"], row["exchange_small_pages_s"]) == (dsgd_s, exchange_s, small_s)
    assert row["dsgd_small_pages_s"] == dsgd_small_s
    assert row["hand_ratio"] == dsgd_s / float64_s
    paired = sorted(t[0] / t[3] for t in r["times"])
    assert row["hand_ratio_paired"] == paired[1]
    assert row["hand_ratio_quartiles"] == pytest.approx([(paired[0] + paired[1]) / 2, (paired[1] + paired[2]) / 2])
    assert row["exchange_ratio"] == dsgd_s / exchange_s
    assert row["small_pages_ratio"] == small_s / exchange_s
    assert row["previous_ratio"] == dsgd_small_s / float64_s
    assert row["max_rel_diff"] == 0.0


def test_the_reference_is_whichever_hand_written_step_has_the_smaller_median():
    # medians per column: dsgd 1.0, in place 2.0, expression 3.0, float64 weights 4.0, exchange 0.5,
    # exchange on small pages 0.8, dsgd on small pages 1.2
    times = np.array([[1.0, 2.0, 3.0, 4.0, 0.5, 0.8, 1.2], [0.9, 2.5, 2.9, 4.1, 0.4, 0.7, 1.1],
                      [1.1, 1.9, 3.1, 3.9, 0.6, 0.9, 1.3]])
    row = hand_row("ring", "sparse", 10, times, 0.0, 3)
    assert (row["hand_form"], row["hand_s"], row["hand_ratio"]) == ("in_place", 2.0, 0.5)
    assert row["hand_ratio_paired"] == 1.0 / 2.0   # the repetitions' ratios: 0.5, 0.36, 0.58
    assert row["hand_forms_s"] == {"in_place": 2.0, "expression": 3.0, "float64_weights": 4.0}
    assert (row["small_pages_ratio"], row["previous_ratio"]) == (0.8 / 0.5, 1.2 / 4.0)


def recorded_stats(order_seed: int) -> dict:
    """pstats' {(path, line, function): (calls, primitive calls, own s, cumulative s, callers)}, shuffled."""
    entries = [(tuple(key), (*values, {})) for key, values in RECORDED["profile_stats"]]
    random.Random(order_seed).shuffle(entries)
    return dict(entries)


def test_profile_lists_the_top_functions_by_own_time_with_their_share_of_the_total():
    shares = profile_shares(recorded_stats(1), 8)
    total = (0.002021 + 0.0001074 + 0.0001037 + 8.896e-05 + 8.217e-05 + 7.271e-05 + 6.852e-05 + 6.092e-05
             + 5.567e-05 + 4.644e-05)  # all ten entries, the two left out included
    assert [name for name, _ in shares] == ["mpi.py:58(wait)", "mpi.py:185(iexchange)",
                                           "~:0(<built-in method torch.mul>)", "mixer.py:320(_combine)",
                                           "mixer.py:303(_start_sparse)", "mixer.py:58(_wait_sparse)",
                                           "mixer.py:154(start)", "mixer.py:266(_chunks)"]
    assert [share for _, share in shares] == pytest.approx(
        [own / total for own in (0.002021, 0.0001074, 0.0001037, 8.896e-05, 8.217e-05, 7.271e-05, 6.852e-05,
                                 6.092e-05)], rel=1e-12)
    assert sum(share for _, share in shares) == pytest.approx(1 - (5.567e-05 + 4.644e-05) / total, rel=1e-12)


def test_profile_order_does_not_depend_on_the_order_pstats_lists_functions():
    assert profile_shares(recorded_stats(1), 8) == profile_shares(recorded_stats(2), 8)


def test_a_profile_with_no_measurable_time_reports_zero_shares():
    stats = {("a.py", 1, "f"): (1, 1, 0.0, 0.0, {}), ("b.py", 2, "g"): (1, 1, 0.0, 0.0, {})}
    assert profile_shares(stats, 8) == [["b.py:2(g)", 0.0], ["a.py:1(f)", 0.0]]

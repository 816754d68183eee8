"""`dsgd.bench startup`'s report from recorded times: medians, spreads, and the baseline's ratio."""
import pytest

from dsgd.bench.startup import summarize


def test_medians_spreads_and_ratios_of_recorded_times():
    times = {"current": {"help": [0.11, 0.10, 0.30], "train": [5.0, 4.0, 6.0, 5.5]},
             "baseline": {"help": [2.7, 2.6, 2.9], "train": [6.0, 7.0, 6.5, 6.2]}}
    report = summarize(times)
    assert report["current"]["help"] == {"median_s": 0.11, "min_s": 0.10, "max_s": 0.30, "repeats": 3}
    assert report["current"]["train"]["median_s"] == pytest.approx(5.25)   # even count: the middle two's mean
    assert report["baseline"]["train"]["median_s"] == pytest.approx(6.35)
    assert report["ratio_baseline_over_current"] == pytest.approx({"help": 2.7 / 0.11, "train": 6.35 / 5.25})


def test_without_a_baseline_there_is_no_ratio():
    report = summarize({"current": {"help": [1.0]}})
    assert set(report) == {"current"}

"""What `python -m dsgd.bench workers` reports, computed from recorded step times
(tests/data/bench/workers.json, K = 1 and 2, 3 repetitions each). The tiny real run is
tests/mpi/test_bench_more.py."""
import json
from pathlib import Path

import pytest
import torch

from dsgd.bench import workers

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "data" / "bench" / "workers.json").read_text())
RESULT_KEYS = {"K", "mode", "samples_per_s", "step_s", "peak_mem_mb", "repeats"}


def recorded_results() -> dict:
    return {(r["K"], r["mode"]): workers.mode_result(r["K"], r["mode"], r["step_s"], RECORDED["batch_size"],
                                                      r["peak_mem_mb"], r["repeats"]) for r in RECORDED["rows"]}


@pytest.mark.parametrize("K, mode, median_step", [
    (1, "serial", 0.03478), (1, "vectorized", 0.03357), (2, "serial", 0.07948), (2, "vectorized", 0.09761)])
def test_a_result_is_the_median_step_and_the_K_workers_samples_per_second(K, mode, median_step):
    row = recorded_results()[K, mode]
    assert set(row) == RESULT_KEYS
    assert (row["K"], row["mode"], row["repeats"], row["step_s"]) == (K, mode, 3, median_step)
    assert row["samples_per_s"] == pytest.approx(K * 32 / median_step, rel=1e-12)
    assert row["peak_mem_mb"] >= 0


def test_fastest_and_speedup_compare_the_two_modes_at_one_K():
    rows = recorded_results()
    assert workers.compare_modes([rows[1, "serial"], rows[1, "vectorized"]]) == ("vectorized", 0.03478 / 0.03357)
    assert workers.compare_modes([rows[2, "serial"], rows[2, "vectorized"]]) == ("serial", 0.07948 / 0.09761)


def test_a_mode_that_could_not_be_built_has_no_speedup_and_none_measured_has_no_fastest():
    rows = recorded_results()
    assert workers.compare_modes([rows[2, "serial"]]) == ("serial", None)
    assert workers.compare_modes([]) == (None, None)


@pytest.mark.parametrize("repeats, budget_s, per_rep, kept", [
    (2, 60.0, 0.5, 2),      # far within the budget: all asked for
    (10, 60.0, 0.0, 10),    # no warmup, no estimate: all asked for
    (10, 60.0, 10.0, 6),    # 6 repetitions fill 60 s
    (10, 60.0, 100.0, 3),   # never fewer than 3
])
def test_repeats_shrink_to_fit_the_time_budget_but_not_below_three(repeats, budget_s, per_rep, kept):
    assert workers.within_budget(repeats, budget_s, per_rep) == kept


def test_auto_never_vectorizes_on_a_cpu():
    assert [workers.choose("auto", torch.device("cpu"), K) for K in (1, 2, 16, 64)] == [False] * 4

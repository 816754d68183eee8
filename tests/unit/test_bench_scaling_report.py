"""What the `python -m dsgd.bench scaling` driver runs and reports, checked without starting jobs: the jobs
and their trainer flags, the window read from a recorded metrics.jsonl (tests/data/bench/scaling-run: a
2-rank D-SGD job of --steps 3), a result row, and efficiencies from recorded throughputs
(tests/data/bench/scaling.json). The tiny real run is tests/mpi/test_bench_more.py."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from dsgd.bench import scaling
from dsgd.config import parse

DATA = Path(__file__).resolve().parents[1] / "data" / "bench"
ROW_KEYS = {"algorithm", "topology", "ranks", "samples_per_s", "step_samples_per_s", "window_s", "compute_s",
            "comm_s", "other_s", "load_average_before"}


def test_algorithms_alternate_at_each_size():
    assert scaling.jobs([1, 2], ["dsgd", "csgd"]) == [("dsgd", 1), ("csgd", 1), ("dsgd", 2), ("csgd", 2)]


def test_dsgd_runs_on_the_complete_graph_below_three_ranks_and_csgd_has_no_graph():
    assert [scaling.topology_for("dsgd", "ring", n) for n in (1, 2, 3, 8)] == ["complete", "complete", "ring", "ring"]
    assert scaling.topology_for("csgd", "ring", 4) is None


@pytest.mark.parametrize("algorithm, ranks, topology", [("dsgd", 2, "complete"), ("dsgd", 4, "ring"),
                                                        ("csgd", 2, None)])
def test_each_job_gets_trainer_flags_the_trainer_accepts(algorithm, ranks, topology, tmp_path):
    args = scaling.parse_args(["--steps", "3"])
    flags = scaling.train_args(args, algorithm, ranks, tmp_path)
    assert flags[:2] == ["-m", "dsgd.train"]
    cfg, _ = parse(flags[2:])  # raises on a flag the trainer does not know
    assert cfg.algo.algorithm == algorithm
    assert (cfg.data.steps_per_epoch, cfg.data.dataset) == (3, "fashion-mnist")
    for flag, value in [("--epochs", "2"), ("--eval-every", "3"), ("--eval-samples", "500"), ("--threads", "1"),
                        ("--out", str(tmp_path))]:
        assert flags[flags.index(flag) + 1] == value
    assert (flags[flags.index("--topology") + 1] if "--topology" in flags else None) == topology


def test_the_window_is_the_second_epoch_between_two_rows_of_metrics():
    w = scaling.read_window(DATA / "scaling-run", 3)
    assert w == {"wall_s": 1.2603683471679688 - 0.7530202865600586,
                 "compute_s": 0.435542162497768 - 0.23492935200010834,
                 "comm_s": 0.03726287000154116 - 0.02080387900059577}


def test_rows_logged_before_inside_or_after_the_window_do_not_move_it(tmp_path):
    recorded = (DATA / "scaling-run" / "metrics.jsonl").read_text().splitlines()
    first, second = (json.loads(line) for line in recorded)
    before = {**first, "step": 1, "wall_s": 0.3, "compute_s": 0.1, "comm_s": 0.01}
    inside = {**first, "step": 4, "wall_s": 0.9, "compute_s": 0.3, "comm_s": 0.03}
    after = {**second, "step": 9, "wall_s": 1.8, "compute_s": 0.6, "comm_s": 0.05}
    rows = (before, first, inside, second, after)
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert scaling.read_window(tmp_path, 3) == scaling.read_window(DATA / "scaling-run", 3)


def test_a_row_turns_the_window_into_throughputs():
    args = SimpleNamespace(steps=3, batch_size=32, topology="ring")
    w = {"wall_s": 0.5, "compute_s": 0.2, "comm_s": 0.05}
    row = scaling.window_row(args, "dsgd", 2, w, 1.5)
    assert set(row) == ROW_KEYS
    assert (row["algorithm"], row["topology"], row["ranks"], row["load_average_before"]) == ("dsgd", "complete", 2, 1.5)
    assert row["samples_per_s"] == 3 * 32 * 2 / 0.5
    assert row["step_samples_per_s"] == pytest.approx(192 / 0.25, rel=1e-12)
    assert (row["window_s"], row["compute_s"], row["comm_s"]) == (0.5, 0.2, 0.05)
    assert row["other_s"] == pytest.approx(0.25, rel=1e-12)


def test_efficiency_is_throughput_over_ranks_times_the_single_rank_throughput_per_algorithm():
    rows = json.loads((DATA / "scaling.json").read_text())["rows"]
    scaling.add_efficiency(rows)
    eff = {(r["algorithm"], r["ranks"]): (r["efficiency"], r["step_efficiency"]) for r in rows}
    assert eff[("dsgd", 1)] == eff[("csgd", 1)] == (1.0, 1.0)
    assert eff[("dsgd", 2)] == pytest.approx((133.8 / (2 * 72.99), 661.4 / (2 * 675.2)), rel=1e-12)
    assert eff[("csgd", 2)] == pytest.approx((136.3 / (2 * 66.57), 514.4 / (2 * 813.8)), rel=1e-12)


def test_without_a_single_rank_job_there_is_no_efficiency():
    rows = [{"algorithm": "dsgd", "ranks": 2, "samples_per_s": 100.0, "step_samples_per_s": 400.0}]
    scaling.add_efficiency(rows)
    assert (rows[0]["efficiency"], rows[0]["step_efficiency"]) == (None, None)

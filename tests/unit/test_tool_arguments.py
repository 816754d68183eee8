"""The other commands' bad input: the demo, the experiment scripts and the elastic benchmark refuse it
with one usage line and status 2 before anything starts (the trainer's own table: test_bad_input.py)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments"))


def usage_error(call, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        call()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


@pytest.mark.parametrize("flags, message", [
    (["--ranks", "0"], "--ranks must be at least 1, got 0"),
    (["--steps", "-1"], "--steps must be at least 1, got -1"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
])
def test_the_demo_refuses_counts_below_one_before_any_job(flags, message, capsys, tmp_path):
    from dsgd.demo import main
    assert usage_error(lambda: main([*flags, "--out", str(tmp_path)]), capsys) == \
        f"python -m dsgd.demo: error: {message}"
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("flags, message", [
    (["--workers", "8", "0"], "--workers must be at least 1, got 0"),
    (["--ranks", "0"], "--ranks must be at least 1, got 0"),
    (["--steps", "0"], "--steps must be at least 1, got 0"),
])
def test_the_topology_comparison_refuses_counts_below_one(flags, message, capsys):
    import compare_topologies
    assert usage_error(lambda: compare_topologies.parse_args(flags), capsys).endswith(f"error: {message}")


@pytest.mark.parametrize("script", ["elastic_failures", "lab_patterns"])
def test_a_report_without_runs_says_what_to_run_first(script, capsys, tmp_path):
    module = __import__(script)
    err = usage_error(lambda: module.main(["report", "--out", str(tmp_path / "none")]), capsys)
    assert err.endswith(f"error: no runs to report on: {tmp_path / 'none' / 'runs.json'} does not exist; run `run` "
                        f"(or `all`) first, with the same --out")


def test_the_elastic_benchmark_without_fault_tolerance_is_refused_at_start():
    res = subprocess.run([sys.executable, "-m", "dsgd.bench", "elastic", "--repeats", "1"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stdout + res.stderr, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1] == (
        "python -m dsgd.bench elastic: error: elastic mode needs an MPI with fault tolerance (ULFM) turned on: start "
        "the job with `mpirun --with-ft ulfm` (Open MPI 5); this job was started without it")


@pytest.mark.parametrize("script, message", [
    ("compression", "compression: neither convex.json nor deep.json in"),
    ("outer_optimizers", "outer_optimizers: no results.json in"),
])
def test_a_report_before_any_run_says_so_and_makes_no_directory(script, message, tmp_path):
    module = __import__(script)
    target = tmp_path / "none" / "report"
    with pytest.raises(SystemExit) as exit_:
        module.main(["report", "--to", str(target)])
    assert str(exit_.value.code).startswith(message)
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("example, flags, message", [
    ("elastic_training.py", ["--kill", "7at92"], "--kill must be RANK@STEP pairs separated by commas, e.g. 7@92,4@240; "
                                                 "got '7at92'"),
    ("elastic_training.py", ["--kill", "1@3"], "elastic mode needs an MPI with fault tolerance (ULFM) turned on"),
    ("language_model.py", ["--steps", "-5"], "--steps, --period, --context and --batch-size must be at least 1"),
])
def test_the_examples_refuse_bad_arguments_in_one_line(example, flags, message):
    res = subprocess.run([sys.executable, str(REPO / "examples" / example), *flags], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stdout + res.stderr, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith(f"{example}: error: {message}")

"""experiments/provenance.py: a run directory stands in for a new run only when it records the same
command at the same clean commit; reports name their commit; no experiment writes into docs/ unless told."""
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments"))

import provenance  # noqa: E402

# A stand-in for an mpirun line: appends one row to RUN_DIR/metrics.jsonl, as the trainer would.
APPEND = "import pathlib, sys; p = pathlib.Path(sys.argv[1]); p.mkdir(parents=True, exist_ok=True); " \
         "open(p / 'metrics.jsonl', 'a').write('{}\\n')"


def job(run_dir: Path, code: str, *extra: str):
    line = [sys.executable, "-c", APPEND, str(run_dir), *extra]
    return provenance.run_job(line, run_dir, code, 60, "test", "job")


def rows(run_dir: Path) -> int:
    return len((run_dir / "metrics.jsonl").read_text().splitlines())


def test_a_run_directory_is_kept_only_for_the_same_command_at_the_same_clean_commit(tmp_path):
    run = tmp_path / "run"
    first, kept = job(run, "a" * 40)
    assert not kept and rows(run) == 1
    assert json.loads((run / "job.json").read_text()) == first
    assert first["status"] == 0 and first["commit"] == "a" * 40 and first["date"]

    again, kept = job(run, "a" * 40)
    assert kept and again == first and rows(run) == 1, "the same command at the same commit is not trained again"

    _, kept = job(run, "b" * 40)
    assert not kept and rows(run) == 1, "another commit trains again, from an empty directory"
    _, kept = job(run, "b" * 40, "--another-flag")
    assert not kept and rows(run) == 1, "another command trains again"
    _, kept = job(run, "b" * 40 + "+dirty")
    assert not kept
    _, kept = job(run, "b" * 40 + "+dirty")
    assert not kept and rows(run) == 1, "a dirty tree always trains again"


def test_a_directory_without_a_record_or_with_a_failed_one_is_trained_again(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n{}\n")  # an earlier run of unknown origin
    _, kept = job(run, "c" * 40)
    assert not kept and rows(run) == 1
    record = json.loads((run / "job.json").read_text())
    (run / "job.json").write_text(json.dumps({**record, "status": 1}))
    _, kept = job(run, "c" * 40)
    assert not kept


def test_a_failed_job_ends_the_script_with_its_output_and_leaves_no_record(tmp_path):
    run = tmp_path / "run"
    line = [sys.executable, "-c", "print('the reason'); raise SystemExit(3)"]
    with pytest.raises(SystemExit) as e:
        provenance.run_job(line, run, "d" * 40, 60, "script", "job 7")
    assert str(e.value).startswith("script: job 7 failed with status 3") and "the reason" in str(e.value)
    assert not (run / "job.json").exists()


def test_commit_is_head_with_dirty_when_tracked_files_differ():
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", provenance.commit())


def test_paths_inside_the_repository_are_shown_relative_to_it(tmp_path):
    assert provenance.rel(REPO / "runs" / "x") == "runs/x"
    assert provenance.rel(tmp_path) == str(tmp_path)
    assert provenance.provenance_line({"command": "c", "commit": "e" * 40, "date": "D"}) == \
        f"Produced by `c` at commit `{'e' * 40}`, D"
    assert "did not record" in provenance.provenance_line({"command": "c", "date": "D"})


def test_no_experiment_writes_into_docs_unless_told():
    import compare_topologies
    import compression
    import reproduce
    outs = {"compare_topologies": compare_topologies.parse_args([]).out,
            "reproduce": reproduce.parse_args(["postlocal"]).out,
            "compression": compression.parse_args(["deep"]).out}
    for script, out in outs.items():
        assert Path(provenance.rel(out)).parts[0] == "runs", (script, out)
    for args in (compare_topologies.parse_args([]), reproduce.parse_args(["all"]), compression.parse_args(["all"])):
        assert args.to is None
    quick = {"compare_topologies": compare_topologies.parse_args(["--quick"]).out,
             "reproduce": reproduce.parse_args(["postlocal", "--quick"]).out,
             "compression": compression.parse_args(["all", "--quick"]).out}
    for script, out in quick.items():
        assert out.endswith("-quick") and out != outs[script], "quick runs do not replace the long runs' directories"


def test_a_quick_reference_keeps_one_entry_per_machine_kind(tmp_path, monkeypatch):
    import provenance
    path = tmp_path / "quick.json"
    meta = {"command": "python experiments/x.py --quick", "commit": "a" * 40, "date": "d"}
    monkeypatch.setattr(provenance, "float_machine", lambda: "cpu A; torch AVX2")
    provenance.write_reference(path, meta, {"acc": [0.5]})
    monkeypatch.setattr(provenance, "float_machine", lambda: "cpu B; torch AVX512")
    provenance.write_reference(path, meta, {"acc": [0.5000001]})
    provenance.write_reference(path, meta, {"acc": [0.5000002]})   # B again: replaces B's, keeps A's
    doc = json.loads(path.read_text())
    assert doc["produced_by"]["machine"] == "cpu B; torch AVX512" and doc["metrics"] == {"acc": [0.5000002]}
    assert [e["produced_by"]["machine"] for e in doc["other_machines"]] == ["cpu A; torch AVX2"]
    assert doc["other_machines"][0]["metrics"] == {"acc": [0.5]}


def test_the_check_is_exact_on_a_known_machine_kind_and_close_elsewhere(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import quick_reference
    monkeypatch.setattr(quick_reference, "REPO", tmp_path)
    command = "python experiments/x.py --quick"
    origin = {"command": command, "commit": "b" * 40, "date": "d"}
    (tmp_path / "ref.json").write_text(json.dumps({
        "produced_by": {**origin, "machine": "B"}, "metrics": {"acc": [0.25]},
        "other_machines": [{"produced_by": {**origin, "machine": "A"}, "metrics": {"acc": [0.2500001]}}]}))

    def fresh(machine, acc):
        f = tmp_path / "fresh.json"
        f.write_text(json.dumps({"produced_by": {**origin, "machine": machine}, "metrics": {"acc": [acc]}}))
        return f
    quick_reference.check(fresh("A", 0.2500001), "ref.json", command)
    with pytest.raises(AssertionError, match="no longer gives the committed numbers"):
        quick_reference.check(fresh("A", 0.25), "ref.json", command)     # exact on a known kind
    with pytest.warns(UserWarning, match="no reference made on this machine kind"):
        quick_reference.check(fresh("C", 0.2500002), "ref.json", command)
    with pytest.raises(AssertionError, match="not within"):
        quick_reference.check(fresh("C", 0.3), "ref.json", command)

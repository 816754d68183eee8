"""The library's examples run as their docstrings launch them (shortened), each under mpirun -np 4."""
import re

import pytest

import mpi_harness
from dsgd.launcher import REPO

JOBS = {"own model": (4, [str(REPO / "examples" / "own_model.py"), "--steps", "40"]),
        "own rule": (4, [str(REPO / "examples" / "own_rule.py")]),
        **{f"lm {a}": (2, [str(REPO / "examples" / "language_model.py"), "--algorithm", a, "--steps", "24"])
           for a in ("csgd", "local", "qsr")}}


def readme_script() -> str:
    """The README's "Your own training script" block, as written."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Your own training script"):]
    return section[section.index("```python\n") + len("```python\n"):section.index("```\n", 10)]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    script = tmp_path_factory.mktemp("readme") / "train.py"
    script.write_text(readme_script())
    return mpi_harness.Batch({**JOBS, "readme": (4, [str(script)])}, timeout=300)


def test_the_readmes_own_script_is_at_most_20_lines_with_its_launch_line_and_runs_on_4_ranks(jobs):
    lines = readme_script().strip().splitlines()
    assert len(lines) <= 20 and lines[-1].startswith("# mpirun -np 4")
    accuracies = re.findall(r"^([0-3]) ([0-9.]+)$", jobs.output("readme"), re.M)
    assert sorted(r for r, _ in accuracies) == ["0", "1", "2", "3"]


def test_your_own_cnn_and_dataloader_learn_by_gossip_and_the_average_is_evaluated(jobs):
    out = jobs.output("own model")
    accuracy = float(re.search(r"epoch 1: average model accuracy ([0-9.]+)", out).group(1))
    assert accuracy > 0.6, out  # 40 steps of 4 workers; chance is 0.1


def test_a_rule_of_your_own_in_under_40_lines_brings_the_ranks_together(jobs):
    source = (REPO / "examples" / "own_rule.py").read_text()
    rule = source[source.index("class DampedGossip"):source.index('if __name__')]
    assert len(rule.strip().splitlines()) <= 40
    distances = [float(d) for d in re.findall(r"distance to rank 0's model ([0-9.e-]+)", jobs.output("own rule"))]
    assert len(distances) == 4 and distances[0] == 0 and max(distances) < 0.2, distances


def test_the_byte_level_language_model_learns_the_text_and_rarer_averaging_sends_less(jobs):
    """24 steps of AdamW on 2 workers: below the uniform-byte loss (ln 256 = 5.545) by a margin, under
    C-SGD (every step), local AdamW (every 4 steps) and QSR (rounds of at least 4 that grow as the
    cosine schedule lowers the learning rate)."""
    loss, sent = {}, {}
    for a in ("csgd", "local", "qsr"):
        m = re.search(r"validation loss ([0-9.]+) .* ([0-9]+) bytes sent per worker", jobs.output(f"lm {a}"))
        loss[a], sent[a] = float(m.group(1)), int(m.group(2))
    assert all(v < 4.5 for v in loss.values()), loss
    assert sent["csgd"] > sent["local"] >= sent["qsr"] > 0, sent


def test_your_own_elastic_loop_loses_a_rank_gets_a_replacement_and_still_learns(tmp_path):
    """examples/elastic_training.py under `mpirun --with-ft ulfm` on 3 ranks: rank 1 dies as step 6
    starts, the survivors redo it and start a new process, which joins with its neighbour's state."""
    import json

    from dsgd import launcher
    line = mpi_harness.with_ft(3, [str(REPO / "examples" / "elastic_training.py"), "--steps", "24",
                                   "--eval-every", "24", "--eval-samples", "500", "--kill", "1@6", "--replace",
                                   "--json", str(tmp_path / "result.json")], replacements=True)
    try:
        res = launcher.execute(line, timeout=240, cwd=REPO)
    except TimeoutError as e:
        raise AssertionError(f"the job hung: {e}") from None
    assert res.returncode == 0, res.stdout[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert [(c["kind"], c["step"], c["workers_after"]) for c in result["changes"]] == \
        [("MembershipChange", 6, 2), ("MembershipJoin", 7, 3)]
    assert result["final_step"] == 24 and result["curve"][-1][2] == 3   # three workers again at the end
    assert result["test_acc"] > 0.5, result   # chance is 0.1

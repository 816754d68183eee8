"""`python -m dsgd.bench agree --json` under real mpirun, one window of one step per arm: one well-formed
report whose deterministic parts are right. Timings on a shared 2-core machine are noise, so none is
asserted on; the report's arithmetic (medians, ratios, quartiles) is checked on a recorded run in
tests/unit/test_bench_agree_report.py."""
import json
import math

import mpi_harness

ARMS = ["agreed", "none", "every-3", "overlapped"]
RESULT_KEYS = {"model", "topology", "step_s", "agree_s", "agree_in_step_s", "agree_ratio", "agree_in_step_ratio",
               "slowdown", "slowdown_quartiles"}


def positive_finite(*values) -> bool:
    return all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in values)


def test_agree_on_two_ranks_times_every_arm_of_the_mlp():
    out = mpi_harness.run_ok(2, ["-m", "dsgd.bench", "agree", "--models", "mlp", "--window", "1", "--repeats", "1",
                                 "--warmup", "0", "--every", "3", "--json"], timeout=180)
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(reports) == 1, f"expected one JSON object from rank 0:\n{out[-4000:]}"
    r = reports[0]
    assert (r["benchmark"], r["world_size"], r["algorithm"], r["window"], r["repeats"], r["warmup"], r["every"]) == \
        ("agree", 2, "dsgd", 1, 1, 0, 3)
    assert r["arms"] == ARMS and len(r["results"]) == 1
    x = r["results"][0]
    assert set(x) == RESULT_KEYS and (x["model"], x["topology"]) == ("mlp", "complete")  # a ring needs 3 ranks
    assert list(x["step_s"]) == ARMS and positive_finite(*x["step_s"].values())
    assert positive_finite(x["agree_s"], x["agree_in_step_s"], x["agree_ratio"], x["agree_in_step_ratio"])
    assert math.isclose(x["agree_ratio"], x["agree_s"] / x["step_s"]["none"])
    assert math.isclose(x["agree_in_step_ratio"], x["agree_in_step_s"] / x["step_s"]["agreed"])
    assert list(x["slowdown"]) == list(x["slowdown_quartiles"]) == [a for a in ARMS if a != "none"]
    for arm, (q25, q75) in x["slowdown_quartiles"].items():
        assert positive_finite(x["slowdown"][arm], q25, q75) and q25 <= x["slowdown"][arm] <= q75
    assert any(note.startswith("slowdown") for note in r["notes"])

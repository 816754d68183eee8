"""`python -m dsgd.bench workers | overhead | peers | scaling --json` on tiny configurations.

Each must give one well-formed report with positive numbers, within a hard timeout. Nothing
is asserted on timings: on a shared 2-core machine they are noise.
"""
import json
import subprocess
import sys

import pytest

import mpi_harness
from dsgd import launcher


def one_report(out: str) -> dict:
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(reports) == 1, f"expected one JSON object:\n{out[-4000:]}"
    return reports[0]


def bench(*args: str, timeout: float = 300) -> dict:
    """A single-process benchmark (or the scaling driver, which starts its own mpirun jobs)."""
    try:
        res = subprocess.run([sys.executable, "-m", "dsgd.bench", *args, "--json"], cwd=mpi_harness.REPO,
                             env=launcher.mpirun_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dsgd.bench {' '.join(args)} did not finish in {timeout}s")
    assert res.returncode == 0, f"status {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return one_report(res.stdout)


def positive(*values) -> bool:
    return all(isinstance(v, (int, float)) and v > 0 for v in values)


def test_help_lists_the_new_subcommands():
    res = subprocess.run([sys.executable, "-m", "dsgd.bench", "--help"], cwd=mpi_harness.REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for name in ("mix", "workers", "overhead", "peers", "scaling"):
        assert f"  {name} " in res.stdout


def test_workers_reports_both_modes_for_every_K():
    r = bench("workers", "--workers", "1", "2", "--repeats", "2", "--warmup", "1")
    assert (r["benchmark"], r["device"], r["model"], r["batch_size"]) == ("workers", "cpu", "cnn", 32)
    assert sorted((x["K"], x["mode"]) for x in r["results"]) == \
        [(1, "serial"), (1, "vectorized"), (2, "serial"), (2, "vectorized")]
    for x in r["results"]:
        assert set(x) == {"K", "mode", "samples_per_s", "step_s", "peak_mem_mb", "repeats"}
        assert positive(x["samples_per_s"], x["step_s"]) and x["peak_mem_mb"] >= 0 and x["repeats"] == 2
        assert x["samples_per_s"] == pytest.approx(x["K"] * 32 / x["step_s"])
    assert r["auto_choice"] == {"1": "serial", "2": "serial"}  # CPU: auto never vectorizes
    assert set(r["fastest"]) == set(r["speedup"]) == {"1", "2"} and positive(*r["speedup"].values())
    assert r["skipped"] == []


def test_overhead_reports_the_ratio_of_two_positive_step_times():
    r = bench("overhead", "--repeats", "3", "--warmup", "1")
    assert (r["benchmark"], r["repeats"], r["target"]) == ("overhead", 3, 1.05)
    assert positive(r["dsgd_s"], r["plain_s"], r["data_s"], r["ratio"])
    assert r["ratio"] == pytest.approx(r["dsgd_s"] / r["plain_s"])
    assert r["met"] == (r["ratio"] <= 1.05)


def test_peers_on_two_ranks_compares_every_side():
    out = mpi_harness.run_ok(2, ["-m", "dsgd.bench", "peers", "--repeats", "2", "--warmup", "1", "--json"],
                             timeout=300)
    r = one_report(out)
    assert (r["benchmark"], r["world_size"], r["local_steps"]) == ("peers", 2, 4)
    assert [x["name"] for x in r["results"]] == ["dsgd-local-mpi", "dsgd-local-torch", "torch-averager",
                                                  "dsgd-csgd-mpi", "dsgd-csgd-torch", "torch-ddp",
                                                  "dsgd-csgd-fp16-mpi", "torch-ddp-fp16",
                                                  "dsgd-csgd-powersgd-mpi"]
    assert all(positive(x["step_s"], x["samples_per_s"]) for x in r["results"])
    sent = {x["name"]: x["bytes_per_step"] for x in r["results"] if "bytes_per_step" in x}
    assert sent["dsgd-csgd-fp16-mpi"] == pytest.approx(sent["dsgd-csgd-mpi"] / 2)  # half the bytes of float32
    assert sent["dsgd-csgd-powersgd-mpi"] < sent["dsgd-csgd-mpi"] / 4
    assert [(c["baseline"], c["target"]) for c in r["comparisons"]] == \
        [("torch-averager", 1.0)] * 2 + [("torch-ddp", 1.1)] * 2 + [("torch-ddp-fp16", 1.1), ("torch-ddp", 1.1)]
    for c in r["comparisons"]:
        assert positive(c["ratio"], *c["ratio_quartiles"]) and c["met"] == (c["ratio"] <= c["target"])


def test_scaling_driver_runs_one_job_per_algorithm_and_size():
    r = bench("scaling", "--ranks", "1", "2", "--steps", "3", "--timeout", "200", timeout=900)
    assert (r["benchmark"], r["steps"]) == ("scaling", 3)
    assert [(x["algorithm"], x["ranks"], x["topology"]) for x in r["results"]] == \
        [("dsgd", 1, "complete"), ("csgd", 1, None), ("dsgd", 2, "complete"), ("csgd", 2, None)]
    for x in r["results"]:
        assert positive(x["samples_per_s"], x["step_samples_per_s"], x["window_s"], x["compute_s"],
                        x["efficiency"], x["step_efficiency"])
        assert x["comm_s"] >= 0
        if x["ranks"] == 1:
            assert x["efficiency"] == pytest.approx(1.0) and x["step_efficiency"] == pytest.approx(1.0)


def test_compression_benchmark_reports_every_codec_beside_the_dense_step():
    out = mpi_harness.run_ok(4, ["-m", "dsgd.bench", "compress", "--numel", "5000", "--repeats", "2", "--json"],
                             timeout=300)
    report = one_report(out)
    codecs = {r["codec"] for r in report["results"]}
    assert {"sign", "top-k:ratio=0.01", "qsgd:levels=16", "fp16"} <= codecs
    for r in report["results"]:
        assert positive(r["step_s"], r["dense_step_s"], r["encode_s"], r["bytes_sent_per_rank"])
        assert r["bytes_sent_per_rank"] == 2 * r["payload_bytes_per_row"]  # a ring: one payload to each neighbour
        assert r["bytes_ratio"] < 1

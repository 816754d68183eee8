"""`python -m dsgd.bench workers | overhead | peers | scaling | compress --json`, each once on its smallest
configuration (one timed repetition, no warmup, the fewest ranks its code path needs).

Each must give one well-formed report within a hard timeout, with its deterministic parts right: world
size, sides and codecs in order, exact byte counts. Nothing is asserted on timings: on a shared 2-core
machine they are noise. The reports' arithmetic is checked on recorded runs in tests/unit/test_bench_*_report.py.
"""
import json
import subprocess
import sys

import pytest

import mpi_harness
from dsgd import launcher

CODECS = ["fp16", "bf16", "int8:block=256", "sign", "top-k:ratio=0.01", "random-k:ratio=0.01", "qsgd:levels=16"]
PEER_SIDES = ["dsgd-local-mpi", "dsgd-local-torch", "torch-averager", "dsgd-csgd-mpi", "dsgd-csgd-torch", "torch-ddp",
              "dsgd-csgd-fp16-mpi", "dsgd-csgd-fp16-half-mpi", "dsgd-csgd-fp16-half-torch", "torch-ddp-fp16",
              "dsgd-csgd-powersgd-mpi"]


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


# the multi-rank benchmarks that succeed, in one mpirun (mpi_harness.Batch)
JOBS = {"peers": (2, ["-m", "dsgd.bench", "peers", "--repeats", "1", "--warmup", "0", "--json"]),
        "compress": (4, ["-m", "dsgd.bench", "compress", "--numel", "1000", "--repeats", "1", "--json"]),
        "postlocal": (2, ["-m", "dsgd.bench", "library", "--vs", "postlocal", "--repeats", "2", "--warmup", "0",
                          "--json"])}


@pytest.fixture(scope="module")
def jobs():
    return mpi_harness.Batch(JOBS, timeout=400)


def positive(*values) -> bool:
    return all(isinstance(v, (int, float)) and v > 0 for v in values)


def cnn_parameters() -> int:
    """Parameters of the peers benchmark's default model on Fashion-MNIST (1 x 28 x 28, 10 classes)."""
    from dsgd.models import build_model
    return sum(p.numel() for p in build_model("cnn", 1, 10, 28, norm="none").parameters())


def test_help_lists_the_new_subcommands():
    res = subprocess.run([sys.executable, "-m", "dsgd.bench", "--help"], cwd=mpi_harness.REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for name in ("mix", "workers", "overhead", "peers", "scaling"):
        assert f"  {name} " in res.stdout


def test_workers_reports_both_modes_for_every_K():
    r = bench("workers", "--workers", "1", "2", "--repeats", "1", "--warmup", "0")
    assert (r["benchmark"], r["device"], r["model"], r["batch_size"], r["warmup"]) == ("workers", "cpu", "cnn", 32, 0)
    assert sorted((x["K"], x["mode"]) for x in r["results"]) == \
        [(1, "serial"), (1, "vectorized"), (2, "serial"), (2, "vectorized")]
    for x in r["results"]:
        assert set(x) == {"K", "mode", "samples_per_s", "step_s", "peak_mem_mb", "repeats"}
        assert positive(x["samples_per_s"], x["step_s"]) and x["peak_mem_mb"] >= 0 and x["repeats"] == 1
        assert x["samples_per_s"] == pytest.approx(x["K"] * 32 / x["step_s"])
    assert r["auto_choice"] == {"1": "serial", "2": "serial"}  # CPU: auto never vectorizes
    assert set(r["fastest"]) == set(r["speedup"]) == {"1", "2"} and positive(*r["speedup"].values())
    assert r["skipped"] == []


def test_overhead_reports_the_ratio_of_two_positive_step_times():
    r = bench("overhead", "--repeats", "1", "--warmup", "0")
    assert (r["benchmark"], r["repeats"], r["warmup"], r["target"]) == ("overhead", 1, 0, 1.05)
    assert positive(r["dsgd_s"], r["plain_s"], r["data_s"], r["ratio"])
    assert r["ratio"] == pytest.approx(r["dsgd_s"] / r["plain_s"])
    assert r["met"] == (r["ratio"] <= 1.05)


def test_peers_on_two_ranks_compares_every_side(jobs):
    r = one_report(jobs.output("peers"))
    assert (r["benchmark"], r["world_size"], r["local_steps"], r["repeats"], r["warmup"]) == ("peers", 2, 4, 1, 0)
    assert [x["name"] for x in r["results"]] == PEER_SIDES
    assert all(positive(x["step_s"], x["samples_per_s"]) for x in r["results"])
    sent = {x["name"]: x["bytes_per_step"] for x in r["results"] if "bytes_per_step" in x}
    assert set(sent) == {name for name in PEER_SIDES if name.startswith("dsgd-")}
    dense = 4 * cnn_parameters()  # C-SGD averages every float32 gradient at every step
    assert sent["dsgd-csgd-mpi"] == sent["dsgd-csgd-torch"] == dense
    assert sent["dsgd-local-mpi"] == sent["dsgd-local-torch"] == dense / 4  # one average per H = 4 steps
    # half the bytes of float32, whichever way the average is summed
    fp16 = ("dsgd-csgd-fp16-mpi", "dsgd-csgd-fp16-half-mpi", "dsgd-csgd-fp16-half-torch")
    assert [sent[side] for side in fp16] == [dense / 2] * 3
    assert sent["dsgd-csgd-powersgd-mpi"] < dense / 4
    assert [(c["dsgd"], c["baseline"], c["target"]) for c in r["comparisons"]] == \
        [(side, "torch-averager", 1.0) for side in ("dsgd-local-mpi", "dsgd-local-torch")] + \
        [(side, "torch-ddp", 1.1) for side in ("dsgd-csgd-mpi", "dsgd-csgd-torch")] + \
        [(side, "torch-ddp-fp16", 1.1) for side in ("dsgd-csgd-fp16-mpi", "dsgd-csgd-fp16-half-mpi",
                                                    "dsgd-csgd-fp16-half-torch")] + \
        [("dsgd-csgd-powersgd-mpi", "torch-ddp", 1.1)]
    for c in r["comparisons"]:
        assert positive(c["ratio"], *c["ratio_quartiles"]) and c["met"] == (c["ratio"] <= c["target"])


def test_scaling_driver_runs_one_job_per_size():
    r = bench("scaling", "--ranks", "1", "2", "--algorithms", "dsgd", "--steps", "1", "--timeout", "200",
              timeout=600)
    assert (r["benchmark"], r["steps"]) == ("scaling", 1)
    assert [(x["algorithm"], x["ranks"], x["topology"]) for x in r["results"]] == \
        [("dsgd", 1, "complete"), ("dsgd", 2, "complete")]  # a ring needs 3 ranks
    for x in r["results"]:
        assert positive(x["samples_per_s"], x["step_samples_per_s"], x["window_s"], x["compute_s"],
                        x["efficiency"], x["step_efficiency"])
        assert x["comm_s"] >= 0
    one, two = r["results"]
    assert one["efficiency"] == pytest.approx(1.0) and one["step_efficiency"] == pytest.approx(1.0)
    assert two["efficiency"] == pytest.approx(two["samples_per_s"] / (2 * one["samples_per_s"]))


def test_compression_benchmark_reports_every_codec_beside_the_dense_step(jobs):
    report = one_report(jobs.output("compress"))
    assert (report["world_size"], report["topology"]) == (4, "ring")
    assert [r["codec"] for r in report["results"]] == CODECS
    for r in report["results"]:
        assert positive(r["step_s"], r["dense_step_s"], r["encode_s"], r["decode_s"], r["exchange_s"], r["sum_s"],
                        r["parts_s"], r["bytes_sent_per_rank"])
        assert r["decodes"] == 3  # its own payload and each of its two neighbours'
        assert r["parts_s"] == r["encode_s"] + 3 * r["decode_s"] + r["exchange_s"] + r["sum_s"]
        assert r["parts_ratio"] == r["step_s"] / r["parts_s"] and r["met"] == (r["parts_ratio"] <= 1.2)
        assert r["numel"] == 1000
        assert r["dense_bytes_per_rank"] == 2 * 4 * 1000  # a ring: the float32 row to each neighbour
        assert r["bytes_sent_per_rank"] == 2 * r["payload_bytes_per_row"]  # and one payload to each
        assert r["bytes_ratio"] == r["bytes_sent_per_rank"] / 8000 and r["bytes_ratio"] < 1
    fp16 = report["results"][0]
    assert fp16["payload_bytes_per_row"] == 2 * 1000  # 2 bytes per float


def test_compression_benchmark_on_a_graph_that_is_the_plain_average_is_one_line_and_status_2():
    res = mpi_harness.run(3, ["-m", "dsgd.bench", "compress", "--numel", "100", "--repeats", "1"], timeout=120)
    assert res.returncode == 2, res.stdout[-3000:]
    assert ("error: --topology ring on 3 ranks is the plain average (one allreduce), not a neighbour exchange; "
            "use more ranks or another topology") in res.stdout
    assert "Traceback" not in res.stdout


def test_library_wrapper_against_bare_torch_optim_on_one_rank():
    r = bench("library", "--repeats", "2", "--warmup", "0")
    assert (r["benchmark"], r["vs"], r["ranks"], r["target"]) == ("library", "torch-optim", 1, 1.03)
    assert positive(r["dsgd_s"], r["peer_s"]) and r["ratio"] == pytest.approx(r["dsgd_s"] / r["peer_s"])


def test_library_local_sgd_against_postlocal_sgd_optimizer_on_two_ranks(jobs):
    r = one_report(jobs.output("postlocal"))
    assert (r["vs"], r["ranks"], r["target"]) == ("postlocal", 2, 1.0)
    assert "PostLocalSGDOptimizer" in r["peer_side"] and positive(r["dsgd_s"], r["peer_s"])


def test_outer_step_benchmark_times_diloco_sync_steps_beside_plain_local_steps_and_streaming_peaks():
    r = bench("outer", "--repeats", "4", "--warmup", "0", "--batch-size", "2", "--period", "4", "--fragments", "4")
    assert (r["benchmark"], r["ranks"], r["workers"], r["period"], r["fragments"]) == ("outer", 1, 4, 4, 4)
    assert positive(r["outer_step_s"], r["local_step_s"])
    assert r["outer_over_local"] == pytest.approx(r["outer_step_s"] / r["local_step_s"])
    # streaming sends one fragment (well under the model) where DiLoCo sends the whole model on a sync step
    assert 0 < r["streaming_peak_bytes_per_step"] < r["diloco_peak_bytes_per_step"]
    assert r["streaming_over_diloco_peak"] < 0.5

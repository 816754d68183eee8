"""What `python -m dsgd.bench mix` reports, checked without ranks: the bytes each kind of step puts on the
network, which topologies a world size cannot hold (and the note that says so), and a result row computed
from a recorded 4-rank run (tests/data/bench/mix.json). The tiny real run is tests/mpi/test_bench_mix.py."""
import json
from pathlib import Path

import numpy as np
import pytest

import topologies
from dsgd.bench.reports import IDENTITY, Identity, bytes_sent, mix_row, mix_topologies, out_peers
from dsgd.comm import classify

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "data" / "bench" / "mix.json").read_text())
DEFAULTS = ["complete", "ring", "torus", "exponential", "one-peer-exponential", "identity"]
ROW_KEYS = {"kind", "numel", "dsgd_s", "raw_s", "ratio", "gbps", "bytes_sent_per_rank", "repeats"}
BUFFER = 4 * 1000  # one float32 row of 1000 elements


def matrices(spec: str, n: int):
    topo = Identity(n) if spec == IDENTITY else topologies.from_spec(spec, n)
    return [topo.W(t) for t in range(topo.period)]


@pytest.mark.parametrize("spec, n, peers", [
    ("ring", 4, 2),                  # the two neighbours
    ("exponential", 4, 2),           # i sends to i + 1 and i + 2
    ("one-peer-exponential", 4, 1),  # one peer at every step of the period
    ("one-peer-exponential", 3, 1),
])
def test_a_sparse_step_sends_the_whole_buffer_to_every_out_neighbour(spec, n, peers):
    for W in matrices(spec, n):
        for rank in range(n):
            assert len(out_peers(W, rank)) == peers
            assert bytes_sent(W, rank, BUFFER) == peers * BUFFER
            assert 1 <= peers < n


@pytest.mark.parametrize("spec, n", [("complete", 3), ("complete", 4), ("ring", 3), ("exponential", 3)])
def test_an_all_one_over_n_step_hands_the_buffer_to_allreduce_once(spec, n):
    # on 3 nodes a ring and the exponential graph link everyone: W = 1/3, one allreduce
    for W in matrices(spec, n):
        assert all(bytes_sent(W, rank, BUFFER) == BUFFER for rank in range(n))


def test_a_rank_sends_to_the_ranks_that_read_its_row_not_to_those_it_reads():
    # directed: ranks 1 and 2 each average with rank 0; rank 0 keeps its own row
    W = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5]])
    assert [bytes_sent(W, rank, BUFFER) for rank in range(3)] == [2 * BUFFER, 0, 0]


def test_the_identity_step_sends_nothing():
    assert all(bytes_sent(Identity(4).W(), rank, BUFFER) == 0 for rank in range(4))


@pytest.mark.parametrize("n", [3, 4])
def test_torus_is_skipped_on_3_and_4_ranks_with_a_note_naming_it(n):
    measured, skipped, notes = mix_topologies(DEFAULTS, n)
    assert [spec for spec, _ in measured] == ["complete", "ring", "exponential", "one-peer-exponential", "identity"]
    assert [s["topology"] for s in skipped] == ["torus"]
    reason = skipped[0]["reason"]
    assert reason.startswith("torus needs") and reason.endswith(f"got n={n}")
    assert notes == [f"skipped torus: {reason}"]


@pytest.mark.parametrize("n, kinds", [
    (3, ["average", "average", "average", "sparse", "identity"]),  # on 3 nodes a ring links everyone
    (4, ["average", "sparse", "sparse", "sparse", "identity"]),
])
def test_each_topology_is_mixed_as_the_kind_its_matrix_has(n, kinds):
    measured, _, _ = mix_topologies(DEFAULTS, n)
    assert [classify(topo.W(0)) for _, topo in measured] == kinds


def test_a_ring_is_skipped_on_two_ranks_and_complete_measured():
    measured, skipped, notes = mix_topologies(["ring", "complete"], 2)
    assert [spec for spec, _ in measured] == ["complete"]
    assert [s["topology"] for s in skipped] == ["ring"]
    assert "ring needs n >= 3" in skipped[0]["reason"]
    assert notes == [f"skipped ring: {skipped[0]['reason']}"]


def recorded_row(topology: str) -> dict:
    r = next(r for r in RECORDED["rows"] if r["topology"] == topology)
    return mix_row(r["kind"], r["numel"], np.array(r["times"]), r["sent"], r["repeats"])


@pytest.mark.parametrize("topology, dsgd_s, raw_s, per_step", [
    # medians of the three recorded repetitions, column by column; bytes over 3 steps / 3
    ("complete", 0.001071, 0.0006115, 4000),              # average: the buffer once
    ("ring", 0.002003, 0.004603, 8000),                   # two out-neighbours on 4 ranks
    ("exponential", 0.001423, 0.0008412, 8000),
    ("one-peer-exponential", 0.00587, 0.0007627, 4000),
])
def test_a_recorded_row_holds_medians_their_ratio_and_bytes_per_step(topology, dsgd_s, raw_s, per_step):
    row = recorded_row(topology)
    assert set(row) == ROW_KEYS
    assert (row["numel"], row["repeats"]) == (1000, 3)
    assert (row["dsgd_s"], row["raw_s"]) == (dsgd_s, raw_s)
    assert row["ratio"] == pytest.approx(dsgd_s / raw_s, rel=1e-12)
    assert row["bytes_sent_per_rank"] == per_step
    assert row["gbps"] == pytest.approx(per_step / dsgd_s / 1e9, rel=1e-12)


def test_the_recorded_identity_row_has_no_baseline_and_no_bytes():
    row = recorded_row("identity")
    assert (row["kind"], row["dsgd_s"], row["raw_s"]) == ("identity", 7.349e-05, 0.0)
    assert row["ratio"] is None and row["bytes_sent_per_rank"] == 0 and row["gbps"] == 0.0


@pytest.mark.parametrize("sent, per_step", [(10000.0, 3333), (20000.0, 6667)])
def test_bytes_per_step_are_the_mean_over_timed_steps_rounded_to_whole_bytes(sent, per_step):
    # a time-varying W whose out-degree changes from step to step: 3333.3 and 6666.7 bytes per step
    row = mix_row("sparse", 1000, np.ones((3, 2)), sent, 3)
    assert row["bytes_sent_per_rank"] == per_step
    assert row["gbps"] == pytest.approx(sent / 3 / 1.0 / 1e9, rel=1e-12)

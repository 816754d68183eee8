"""What `python -m dsgd.bench compress` reports per codec, computed from a recorded 4-rank ring run
(tests/data/bench/compress.json). The bytes a codec really puts on the wire need ranks:
tests/mpi/test_bench_more.py."""
import json
from pathlib import Path

import pytest

from dsgd.bench import compress

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "data" / "bench" / "compress.json").read_text())
ROW_KEYS = {"numel", "codec", "encode_s", "decode_s", "step_s", "bytes_sent_per_rank", "payload_bytes_per_row",
            "transfer_s", "dense_step_s", "dense_bytes_per_rank", "step_ratio", "bytes_ratio"}


def recorded_rows() -> dict:
    r = RECORDED
    return {c["codec"]: compress.codec_row(r["numel"], c["codec"], c["measured"], r["dense"]) for c in r["codecs"]}


def test_by_default_every_codec_family_is_measured_at_two_model_sizes():
    args = compress.parse_args([])
    assert args.codecs == ["fp16", "bf16", "int8:block=256", "sign", "top-k:ratio=0.01", "random-k:ratio=0.01",
                           "qsgd:levels=16"]
    assert (args.numel, args.topology) == ([270_000, 11_000_000], "ring")


@pytest.mark.parametrize("codec, sent, step_s, encode_s, decode_s", [
    ("fp16", 20000, 0.0007204, 2.164e-05, 1.514e-05),        # 2 bytes per float, to 2 neighbours
    ("int8:block=256", 10160, 0.004667, 0.0001365, 6.814e-05),
    ("sign", 1258, 0.006977, 0.0001147, 0.0001027),
    ("top-k:ratio=0.01", 800, 0.008358, 0.0001306, 5.521e-05),
])
def test_a_row_sets_the_codec_beside_the_dense_step(codec, sent, step_s, encode_s, decode_s):
    row = recorded_rows()[codec]
    assert set(row) == ROW_KEYS
    assert (row["numel"], row["codec"], row["bytes_sent_per_rank"]) == (5000, codec, sent)
    assert (row["dense_step_s"], row["dense_bytes_per_rank"]) == (0.0005705, 40000)  # 4 bytes x 5000 x 2
    assert row["transfer_s"] == step_s - encode_s - decode_s
    assert row["step_ratio"] == step_s / 0.0005705
    assert row["bytes_ratio"] == sent / 40000


def test_every_recorded_codec_sends_fewer_bytes_than_the_dense_step():
    ratios = {codec: row["bytes_ratio"] for codec, row in recorded_rows().items()}
    assert ratios == {"fp16": 0.5, "bf16": 0.5, "int8:block=256": 0.254, "sign": 0.03145,
                      "top-k:ratio=0.01": 0.02, "random-k:ratio=0.01": 0.01, "qsgd:levels=16": 0.2502}
    assert all(ratio < 1 for ratio in ratios.values())


def test_transfer_time_is_never_negative_when_clock_noise_makes_the_step_shorter_than_its_parts():
    measured = {"encode_s": 0.003, "decode_s": 0.002, "step_s": 0.004, "bytes_sent_per_rank": 10,
                "payload_bytes_per_row": 5}
    row = compress.codec_row(100, "sign", measured, {"step_s": 0.008, "bytes_sent_per_rank": 800})
    assert row["transfer_s"] == 0.0
    assert (row["step_ratio"], row["bytes_ratio"]) == (0.5, 10 / 800)

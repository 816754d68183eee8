"""What `python -m dsgd.bench compress` reports per codec, computed from a recorded 4-rank ring run
(tests/data/bench/compress.json). The bytes a codec really puts on the wire need ranks:
tests/mpi/test_bench_more.py."""
import json
from pathlib import Path

import pytest

from dsgd.bench import compress

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "data" / "bench" / "compress.json").read_text())
ROW_KEYS = {"numel", "codec", "encode_s", "decode_s", "exchange_s", "sum_s", "step_s", "decodes", "bytes_sent_per_rank",
            "payload_bytes_per_row", "parts_s", "parts_ratio", "parts_target", "met", "dense_step_s",
            "dense_bytes_per_rank", "step_ratio", "bytes_ratio"}


def recorded_rows() -> dict:
    r = RECORDED
    return {c["codec"]: compress.codec_row(r["numel"], c["codec"], c["measured"], r["dense"]) for c in r["codecs"]}


def test_by_default_every_codec_family_is_measured_at_two_model_sizes():
    args = compress.parse_args([])
    assert args.codecs == ["fp16", "bf16", "int8:block=256", "sign", "top-k:ratio=0.01", "random-k:ratio=0.01",
                           "qsgd:levels=16"]
    assert (args.numel, args.topology) == ([270_000, 11_000_000], "ring")


@pytest.mark.parametrize("codec, sent, step_s, encode_s, decode_s, exchange_s, sum_s", [
    ("fp16", 20000, 0.003968, 1.851e-05, 1.732e-05, 0.008057, 0.0001826),        # 2 bytes per float, to 2 neighbours
    ("int8:block=256", 10160, 0.0114, 0.0002886, 0.000111, 0.006593, 0.00017),
    ("sign", 1258, 0.008373, 0.0001636, 0.00013, 0.00611, 0.0001421),
    ("top-k:ratio=0.01", 800, 0.008286, 0.0001966, 5.168e-05, 0.006854, 0.0001678),
])
def test_a_row_sets_the_step_beside_its_parts_and_the_dense_step(codec, sent, step_s, encode_s, decode_s, exchange_s,
                                                                  sum_s):
    row = recorded_rows()[codec]
    assert set(row) == ROW_KEYS
    assert (row["numel"], row["codec"], row["bytes_sent_per_rank"], row["decodes"]) == (5000, codec, sent, 3)
    assert (row["dense_step_s"], row["dense_bytes_per_rank"]) == (0.004088, 40000)  # 4 bytes x 5000 x 2
    # each payload decoded once per rank that needs it: its own and its two neighbours'
    parts = encode_s + 3 * decode_s + exchange_s + sum_s
    assert row["parts_s"] == parts and row["parts_ratio"] == step_s / parts
    assert row["parts_target"] == 1.2 and row["met"] == (step_s / parts <= 1.2)
    assert row["step_ratio"] == step_s / 0.004088
    assert row["bytes_ratio"] == sent / 40000


def test_every_recorded_codec_sends_fewer_bytes_than_the_dense_step():
    ratios = {codec: row["bytes_ratio"] for codec, row in recorded_rows().items()}
    assert ratios == {"fp16": 0.5, "bf16": 0.5, "int8:block=256": 0.254, "sign": 0.03145,
                      "top-k:ratio=0.01": 0.02, "random-k:ratio=0.01": 0.01, "qsgd:levels=16": 0.2502}
    assert all(ratio < 1 for ratio in ratios.values())


def test_a_step_over_its_target_is_not_met():
    measured = {"encode_s": 0.003, "decode_s": 0.002, "exchange_s": 0.001, "sum_s": 0.001, "step_s": 0.0156,
                "decodes": 3, "bytes_sent_per_rank": 10, "payload_bytes_per_row": 5}
    row = compress.codec_row(100, "sign", measured, {"step_s": 0.008, "bytes_sent_per_rank": 800})
    assert row["parts_s"] == 0.003 + 3 * 0.002 + 0.001 + 0.001
    assert row["parts_ratio"] == 0.0156 / row["parts_s"] and not row["met"]   # 1.42 > 1.2
    assert (row["step_ratio"], row["bytes_ratio"]) == (0.0156 / 0.008, 10 / 800)

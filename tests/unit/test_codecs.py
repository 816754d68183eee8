"""Codecs alone: payload sizes, round trips, the compression bound where it holds, unbiasedness where claimed."""
import math

import pytest
import torch

from dsgd.compress import Key, parse_codec

SPECS = ["none", "fp16", "bf16", "int8:block=64", "sign", "sign:block=16", "top-k:ratio=0.1", "top-k:count=3",
         "random-k:ratio=0.25", "random-k:count=5,shared=true", "qsgd:levels=16",
         "qsgd:levels=8,scaled=true"]
SIZES = [5, 7, 100, 1001]
KEY = Key(seed=3, step=11, worker=2)


def vector(m, seed=0):
    return torch.randn(m, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("m", SIZES)
def test_payload_has_the_agreed_size_and_decodes_to_the_right_shape(spec, m):
    codec = parse_codec(spec)
    payload = codec.encode(vector(m), KEY)
    assert payload.dtype == torch.uint8 and payload.numel() == codec.payload_bytes(m)
    out = codec.decode(payload, m, KEY, torch.float32)
    assert out.shape == (m,) and torch.isfinite(out).all()


def test_payload_sizes_are_what_the_table_says():
    m = 1000
    sizes = {s: parse_codec(s).payload_bytes(m) for s in SPECS}
    assert sizes["none"] == 4000 and sizes["fp16"] == sizes["bf16"] == 2000
    assert sizes["int8:block=64"] == 1000 + 4 * 16
    assert sizes["sign"] == 125 + 4 and sizes["sign:block=16"] == 125 + 4 * 63  # about 1/32 of the dense bytes
    assert sizes["top-k:ratio=0.1"] == 8 * 100 and sizes["random-k:ratio=0.25"] == 4 * 250
    assert sizes["qsgd:levels=16"] == 4 + 1000


@pytest.mark.parametrize("m", SIZES)
def test_round_trips(m):
    v = vector(m)
    dec = lambda spec: parse_codec(spec).decode(parse_codec(spec).encode(v, KEY), m, KEY, torch.float32)  # noqa
    assert torch.equal(dec("none"), v)
    assert torch.equal(dec("fp16"), v.half().float()) and torch.equal(dec("bf16"), v.bfloat16().float())
    assert (dec("int8:block=64") - v).abs().max() <= v.abs().max() / 127 / 2 * 1.0001
    s = dec("sign")
    assert torch.equal(torch.sign(s), torch.where(v >= 0, 1.0, -1.0))
    assert torch.allclose(s.abs(), v.abs().mean().expand(m))
    k = max(1, round(0.1 * m))
    t = dec("top-k:ratio=0.1")
    kept = t != 0
    assert int(kept.sum()) == k and torch.equal(t[kept], v[kept])
    assert v[kept].abs().min() >= v[~kept].abs().max() if k < m else True
    r = dec("random-k:ratio=0.25")
    assert int((r != 0).sum()) == max(1, round(0.25 * m)) and torch.equal(r[r != 0], v[r != 0])
    q = dec("qsgd:levels=16")
    grid = q / (torch.linalg.vector_norm(v) / 16)
    assert torch.allclose(grid, grid.round(), atol=1e-4)


@pytest.mark.parametrize("spec", ["top-k:ratio=0.1", "top-k:count=1", "sign", "sign:block=16"])
def test_contraction_bound_holds(spec):
    codec = parse_codec(spec)
    for seed in range(20):
        v = vector(257, seed)
        q = codec.decode(codec.encode(v, KEY), 257, KEY, torch.float32)
        delta = codec.delta(v)
        assert 0 < delta <= 1
        assert float(((q - v) ** 2).sum()) <= (1 - delta) * float((v * v).sum()) * (1 + 1e-6)
    if spec.startswith("sign"):
        assert codec.delta(vector(257)) >= 1 / 257


def test_random_k_meets_the_bound_in_expectation():
    codec, v = parse_codec("random-k:ratio=0.2"), vector(200)
    errors = []
    for step in range(400):
        key = Key(0, step, 0)
        q = codec.decode(codec.encode(v, key), 200, key, torch.float32)
        errors.append(float(((q - v) ** 2).sum()))
    assert sum(errors) / len(errors) <= (1 - codec.delta(v)) * float((v * v).sum()) * 1.05


def test_scaled_qsgd_meets_its_contraction_bound_in_expectation():
    codec, v = parse_codec("qsgd:levels=4,scaled=true"), vector(300)
    errors = [float(((codec.decode(codec.encode(v, Key(2, s, 0)), 300, Key(2, s, 0), torch.float32) - v) ** 2).sum())
              for s in range(400)]
    assert sum(errors) / len(errors) <= (1 - codec.delta(v)) * float((v * v).sum())


def test_qsgd_is_unbiased():
    codec, v = parse_codec("qsgd:levels=4"), vector(50)
    draws = torch.stack([codec.decode(codec.encode(v, Key(1, s, 0)), 50, Key(1, s, 0), torch.float32)
                         for s in range(4000)])
    # per entry the draw has variance <= (norm/s)^2/4; the mean of 4000 is within 5 standard errors
    bound = 5 * (torch.linalg.vector_norm(v) / 4) / 2 / math.sqrt(4000)
    assert (draws.mean(0) - v).abs().max() < bound


def test_random_draws_are_keyed_by_seed_step_and_worker():
    codec, v = parse_codec("random-k:count=10"), vector(100)
    same = [codec.encode(v, Key(1, 5, 2)) for _ in range(2)]
    assert torch.equal(*same)
    assert not torch.equal(codec.encode(v, Key(1, 5, 3)), same[0])  # another worker, other indices
    shared = parse_codec("random-k:count=10,shared=true")
    a, b = shared.decode(shared.encode(v, Key(1, 5, 2)), 100, Key(1, 5, 2), torch.float32), \
        shared.decode(shared.encode(v, Key(1, 5, 3)), 100, Key(1, 5, 3), torch.float32)
    assert torch.equal(a != 0, b != 0) and shared.additive


@pytest.mark.parametrize("spec, message", [
    ("zip", "unknown codec 'zip'"), ("top-k", "exactly one of ratio"), ("top-k:ratio=2", "ratio must be in (0, 1]"),
    ("qsgd:levels=300", "levels must be in 1..127"), ("sign:bits=2", "takes no option 'bits'"),
    ("int8:block=x", "block must be int"), ("top-k:ratio", "expected key=value"),
    ("random-k:ratio=0.1,shared=yes-please", "random-k option shared must be true or false, got 'yes-please'"),
    ("qsgd:levels=4,scaled=ture", "qsgd option scaled must be true or false, got 'ture'"),
    ("top-k:ratio=0.5,ratio=0.01", "option 'ratio' given twice in codec spec 'top-k:ratio=0.5,ratio=0.01'"),
    ("top-k:ratio=-0.5,count=3", "give ratio or count, not both"),
    ("top-k:ratio=-0.5", "top-k ratio must be in (0, 1], got -0.5"),
    ("random-k:count=0", "random-k count must be >= 1, got 0"),
    ("top-k:ratio=nan", "ratio must be a finite number"),
    ("fp16:sum=float", "codec fp16: sum must be exact or half, got 'float'")])
def test_bad_codec_specs_are_named(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_codec(spec)


def test_bit_packing_is_the_same_on_the_numpy_and_the_torch_path():
    from dsgd.compress import codecs
    bits = torch.rand(1003, generator=torch.Generator().manual_seed(0)) > 0.5
    packed = codecs.pack_bits(bits)
    padded = torch.nn.functional.pad(bits.to(torch.uint8), (0, (-1003) % 8)).view(-1, 8)
    by_hand = (padded * torch.tensor(codecs.BIT_WEIGHTS, dtype=torch.uint8)).sum(dim=1, dtype=torch.uint8)
    assert torch.equal(packed, by_hand) and packed.numel() == 126
    assert torch.equal(codecs.unpack_bits(packed, 1003), bits)


@pytest.mark.parametrize("spec", SPECS + ["fp16:sum=half", "int8:block=16", "sign:block=7"])
@pytest.mark.parametrize("m", [5, 7, 16, 1001, 4096])
def test_writing_into_a_buffer_gives_the_same_bytes_and_values(spec, m):
    # what the mixer's compressed step uses: the payload written into a row of a send buffer and the
    # decoded values written into a row it sums from, at aligned and unaligned offsets, in float32,
    # float64 and float16, for float32 and float64 inputs (zeros of both signs among them)
    codec = parse_codec(spec)
    for dtype in (torch.float32, torch.float64):
        v = vector(m, seed=m).to(dtype)
        v[1], v[2] = 0.0, -0.0
        payload = codec.encode(v, KEY)
        for offset in (0, 1, 2, 4):
            row = torch.full((offset + payload.numel() + 3,), 77, dtype=torch.uint8)
            codec.encode_into(v, KEY, row[offset:offset + payload.numel()])
            assert torch.equal(row[offset:offset + payload.numel()], payload), (dtype, offset)
            assert torch.equal(row[:offset], torch.full((offset,), 77, dtype=torch.uint8))
        for out_dtype in (torch.float32, torch.float64, torch.float16):
            expected = codec.decode(payload, m, KEY, out_dtype)
            for offset in (0, 1):
                stored = torch.zeros(offset + payload.numel(), dtype=torch.uint8)
                stored[offset:] = payload
                out = torch.full((m,), 5.0, dtype=out_dtype)
                codec.decode_into(stored[offset:], m, KEY, out)
                assert torch.equal(out.view(torch.uint8), expected.view(torch.uint8)), (out_dtype, offset)


def test_half_precision_sums_are_an_option_of_the_cast_codecs_only():
    assert not parse_codec("fp16").sum_in_half and parse_codec("fp16:sum=half").sum_in_half
    assert parse_codec("bf16:sum=half").dtype == torch.bfloat16 and parse_codec("fp16:sum=exact").spec == "fp16"
    assert parse_codec("fp16:sum=half").spec == "fp16:sum=half"
    with pytest.raises(ValueError, match="takes no option 'sum'"):
        parse_codec("int8:sum=half")

"""Codecs: a (m,) tensor to the bytes that travel, and back. Pure tensor functions on the tensor's device.

Every payload has a size fixed by the codec and m alone, so both ends of a link agree on it
without a header. Random codecs draw from a generator keyed by (seed, step, worker): every
process recreates the same draws, and a resumed run repeats them bit for bit.

| codec | payload for m float32 | delta in E||Q(v) - v||^2 <= (1 - delta)||v||^2 | unbiased |
|---|---|---|---|
| none | 4m | 1 | yes |
| fp16, bf16 (sum=exact or half) | 2m | (rounding only) | no |
| int8:block=B | m + 4 ceil(m/B) | (rounding only) | no |
| sign:block=B | ceil(m/8) + 4 ceil(m/B) | ||v||_1^2 / (m ||v||^2) per block, >= 1/B | no |
| top-k:ratio=r or count=k | 8k (values, int32 indices) | k/m | no |
| random-k:ratio=r or count=k | 4k (values; indices recreated) | k/m (in expectation) | no |
| qsgd:levels=s | 4 + m (norm, one signed level byte per entry, s <= 127) | (variance bound) | yes |
| qsgd:levels=s,scaled=true | the same | 1 / (1 + min(m/s^2, sqrt(m)/s)) in expectation | no |

References: scaled sign (Karimireddy et al. 2019), top-k and random-k (Stich et al. 2018),
QSGD (Alistarh et al. 2017), all used with CHOCO-SGD (Koloskova et al. 2019).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FLOAT_BYTES = 4


def as_bytes(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.uint8).reshape(-1)


def from_bytes(b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    size = torch.empty((), dtype=dtype).element_size()
    if not b.is_contiguous() or b.storage_offset() % size:
        b = b.clone()  # a view as a wider type needs an aligned start
    return b.view(dtype)


def typed_view(b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """b (contiguous uint8) viewed as dtype without a copy, or None where its start is not aligned for it."""
    if not b.is_contiguous() or b.storage_offset() % dtype.itemsize or b.numel() % dtype.itemsize:
        return None
    return b.view(dtype)


def generator(device: torch.device, seed: int, step: int, worker: int, part: int = 0) -> torch.Generator:
    """The same stream on every process for (seed, step, worker, part)."""
    g = torch.Generator(device=device)
    g.manual_seed((((seed * 1_000_003 + step) * 1_000_033 + worker) * 1_009 + part) % (2 ** 63 - 1))
    return g


@dataclass(frozen=True)
class Key:
    """Which draws a random codec uses: (seed, step, worker, part), part being the buffer's index in
    the step; shared=True drops the worker (same indices on every worker)."""
    seed: int
    step: int
    worker: int
    part: int = 0

    def generator(self, device, shared: bool = False) -> torch.Generator:
        return generator(device, self.seed, self.step, 0 if shared else self.worker + 1, self.part)


BIT_WEIGHTS = (1, 2, 4, 8, 16, 32, 64, 128)  # entry 8j + b is bit b of byte j


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """A bool (m,) tensor as ceil(m/8) bytes, on its own device (numpy's packbits on the CPU)."""
    if bits.device.type == "cpu":
        import numpy as np
        return torch.from_numpy(np.packbits(bits.numpy(), bitorder="little"))
    padded = torch.nn.functional.pad(bits.to(torch.uint8), (0, (-bits.numel()) % 8)).view(-1, 8)
    weights = torch.tensor(BIT_WEIGHTS, dtype=torch.uint8, device=bits.device)
    return (padded * weights).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, m: int) -> torch.Tensor:
    """The first m bits of `packed`, as a bool tensor."""
    if packed.device.type == "cpu":
        import numpy as np
        # numpy's 0 / 1 bytes are torch's bools as they are: a view, not a copy
        return torch.from_numpy(np.unpackbits(packed.contiguous().numpy(), count=m, bitorder="little")).view(torch.bool)
    weights = torch.tensor(BIT_WEIGHTS, dtype=torch.uint8, device=packed.device)
    return ((packed[:, None] & weights) > 0).reshape(-1)[:m]


class Codec:
    """Base: encode(v, key) -> uint8 payload of payload_bytes(m); decode(payload, m, key, dtype) -> (m,)."""

    spec = "none"
    unbiased = True
    additive = False   # payloads of different workers can be summed as they are
    additive_float32 = False  # ... as float32 values: averages then take one allreduce, not an allgather

    def payload_bytes(self, m: int) -> int:
        return FLOAT_BYTES * m

    def encode(self, v: torch.Tensor, key: Key) -> torch.Tensor:
        return as_bytes(v.float())

    def decode(self, payload: torch.Tensor, m: int, key: Key, dtype: torch.dtype) -> torch.Tensor:
        return from_bytes(payload, torch.float32).to(dtype)

    # The *_into forms write what encode / decode return into a buffer the caller owns (a row of a
    # send buffer, a row of decoded values), byte for byte and bit for bit the same; a codec
    # without its own writes through a copy.
    def encode_into(self, v: torch.Tensor, key: Key, out: torch.Tensor) -> None:
        """out (uint8, payload_bytes(m)) <- encode(v, key)."""
        wide = typed_view(out, torch.float32) if type(self).encode is Codec.encode else None
        if wide is None:
            out.copy_(self.encode(v, key))
        else:
            wide.copy_(v)

    def decode_into(self, payload: torch.Tensor, m: int, key: Key, out: torch.Tensor) -> None:
        """out ((m,), any float dtype) <- decode(payload, m, key, out.dtype)."""
        if type(self).decode is Codec.decode:
            out.copy_(from_bytes(payload, torch.float32))
        else:
            out.copy_(self.decode(payload, m, key, out.dtype))

    def delta(self, v: torch.Tensor) -> float | None:
        """The contraction constant for v, where the codec has one (None: not a contraction bound)."""
        return 1.0


class Identity(Codec):
    pass


class Cast(Codec):
    """fp16 or bf16: half the bytes; PyTorch's fp16 communication hook does the same for gradients.

    sum=exact (the default): an average over all workers is the exact mean of the half-precision
    payloads (allgathered, summed in float64 in worker order), the same bits in every layout.
    sum=half: an average is one allreduce of the payloads, each divided by n, summed in half
    precision by the backend (torch.distributed; MPI where it has MPI_FLOAT16_T), as PyTorch's
    fp16_compress_hook does; where the backend cannot, the exact mean. Sparse steps are the same
    either way."""

    unbiased = False
    additive = True

    def __init__(self, dtype: torch.dtype, sum_in_half: bool = False):
        self.dtype, self.sum_in_half = dtype, sum_in_half
        self.spec = {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype] + (":sum=half" if sum_in_half else "")

    def payload_bytes(self, m):
        return 2 * m

    def encode(self, v, key):
        return as_bytes(v.to(self.dtype))

    def decode(self, payload, m, key, dtype):
        return from_bytes(payload, self.dtype).to(dtype)

    def encode_into(self, v, key, out):
        half = typed_view(out, self.dtype)
        if half is None:
            out.copy_(self.encode(v, key))
        else:
            half.copy_(v)   # the same rounding as v.to(dtype)

    def decode_into(self, payload, m, key, out):
        out.copy_(from_bytes(payload, self.dtype))

    def delta(self, v):
        return None


class Int8(Codec):
    """Round to 127 levels of each block's largest magnitude; one float32 scale per block."""

    unbiased = False

    def __init__(self, block: int = 256):
        if block < 1:
            raise ValueError(f"int8 block must be >= 1, got {block}")
        self.block, self.spec = block, f"int8:block={block}"

    def payload_bytes(self, m):
        return m + FLOAT_BYTES * math.ceil(m / self.block)

    def _blocks(self, v):
        m = v.numel()
        pad = (-m) % self.block
        x = v.float()
        if pad == 0 and x.is_contiguous():
            return x.view(-1, self.block), m  # read only: the same values without the padded copy
        return torch.nn.functional.pad(x, (0, pad)).view(-1, self.block), m

    def _levels(self, v):
        blocks, m = self._blocks(v)
        scale = blocks.abs().amax(dim=1) / 127
        q = torch.where(scale[:, None] > 0, torch.round(blocks / scale.clamp_min(1e-38)[:, None]), 0)
        return q.reshape(-1)[:m], scale, m

    def encode(self, v, key):
        q, scale, m = self._levels(v)
        return torch.cat([as_bytes(q.to(torch.int8)), as_bytes(scale)])

    def encode_into(self, v, key, out):
        q, scale, m = self._levels(v)
        out[:m].view(torch.int8).copy_(q)
        out[m:].copy_(as_bytes(scale))

    def decode(self, payload, m, key, dtype):
        q = from_bytes(payload[:m], torch.int8).float()
        scale = from_bytes(payload[m:], torch.float32)
        pad = (-m) % self.block
        q = torch.nn.functional.pad(q, (0, pad)).view(-1, self.block)
        return (q * scale[:, None]).reshape(-1)[:m].to(dtype)

    def decode_into(self, payload, m, key, out):
        if out.dtype != torch.float32 or not out.is_contiguous():
            return super().decode_into(payload, m, key, out)
        q = from_bytes(payload[:m], torch.int8).float()
        scale = from_bytes(payload[m:], torch.float32)
        _scale_blocks_into(q, scale, self.block, out)

    def delta(self, v):
        return None


def _scale_blocks_into(values: torch.Tensor, scale: torch.Tensor, B: int, out: torch.Tensor) -> None:
    """out[i] = values[i] * scale[i // B], the products decode takes on padded blocks, without the padding."""
    m = values.numel()
    full = m // B
    if full:
        torch.mul(values[:full * B].view(full, B), scale[:full, None], out=out[:full * B].view(full, B))
    if full * B < m:
        torch.mul(values[full * B:], scale[full], out=out[full * B:])


class Sign(Codec):
    """Scaled sign: one bit per entry (packed eight to a byte) and ||v_block||_1 / block per block."""

    unbiased = False

    def __init__(self, block: int = 0):
        if block < 0:
            raise ValueError(f"sign block must be >= 0 (0: one scale for the whole buffer), got {block}")
        self.block = block
        self.spec = "sign" if block == 0 else f"sign:block={block}"

    def _block(self, m):
        return self.block or max(1, m)

    def payload_bytes(self, m):
        return math.ceil(m / 8) + FLOAT_BYTES * math.ceil(m / self._block(m))

    def _parts(self, v):
        m, B = v.numel(), self._block(v.numel())
        x = v.float()
        pad = (-m) % B
        # read only: without padding, the blocks are a view with the padded copy's values
        padded = x.view(-1, B) if pad == 0 and x.is_contiguous() else torch.nn.functional.pad(x, (0, pad)).view(-1, B)
        lengths = torch.full((padded.shape[0],), float(B), device=v.device)
        lengths[-1] = m - B * (padded.shape[0] - 1)
        scale = padded.abs().sum(dim=1) / lengths
        return pack_bits(x >= 0), scale

    def encode(self, v, key):
        bits, scale = self._parts(v)
        return torch.cat([bits, as_bytes(scale)])

    def encode_into(self, v, key, out):
        bits, scale = self._parts(v)
        out[:bits.numel()].copy_(bits)
        out[bits.numel():].copy_(as_bytes(scale))

    def decode(self, payload, m, key, dtype):
        B = self._block(m)
        nbytes = math.ceil(m / 8)
        signs = unpack_bits(payload[:nbytes], m).float() * 2 - 1
        scale = from_bytes(payload[nbytes:], torch.float32)
        return (signs * scale.repeat_interleave(B)[:m]).to(dtype)

    def decode_into(self, payload, m, key, out):
        if out.dtype != torch.float32 or not out.is_contiguous():
            return super().decode_into(payload, m, key, out)
        nbytes = math.ceil(m / 8)
        signs = torch.empty(m, dtype=torch.float32, device=out.device)
        signs.copy_(unpack_bits(payload[:nbytes], m)).mul_(2).sub_(1)   # decode's +-1.0, without temporaries
        _scale_blocks_into(signs, from_bytes(payload[nbytes:], torch.float32), self._block(m), out)

    def delta(self, v):
        m, B = v.numel(), self._block(v.numel())
        x = v.double()
        blocks = [x[i:i + B] for i in range(0, m, B)]
        num = sum(float(b.abs().sum()) ** 2 / b.numel() for b in blocks)
        return num / float((x * x).sum()) if float((x * x).sum()) > 0 else 1.0


def _count(spec_name, m, ratio, count):
    k = count if count else max(1, int(round(ratio * m)))
    if not 1 <= k <= m:
        raise ValueError(f"{spec_name} keeps {k} of {m} entries; it needs 1 <= k <= m")
    return k


class TopK(Codec):
    """The k largest |v| entries: values and int32 indices."""

    unbiased = False

    def __init__(self, ratio: float = 0.0, count: int = 0):
        if (ratio > 0) == (count > 0):
            raise ValueError("top-k needs exactly one of ratio in (0, 1] or count >= 1")
        if ratio > 1:
            raise ValueError(f"top-k ratio must be in (0, 1], got {ratio}")
        self.ratio, self.count = ratio, count
        self.spec = f"top-k:ratio={ratio:g}" if ratio else f"top-k:count={count}"

    def k(self, m):
        return _count("top-k", m, self.ratio, self.count)

    def payload_bytes(self, m):
        return 8 * self.k(m)

    def _kept(self, v):
        x = v.float()
        idx = torch.topk(x.abs(), self.k(x.numel()), sorted=False).indices.sort().values
        return x[idx], idx

    def encode(self, v, key):
        values, idx = self._kept(v)
        return torch.cat([as_bytes(values), as_bytes(idx.to(torch.int32))])

    def encode_into(self, v, key, out):
        values, idx = self._kept(v)
        k = values.numel()
        out[:4 * k].copy_(as_bytes(values))
        out[4 * k:].copy_(as_bytes(idx.to(torch.int32)))

    def decode(self, payload, m, key, dtype):
        k = self.k(m)
        values = from_bytes(payload[:4 * k], torch.float32)
        idx = from_bytes(payload[4 * k:], torch.int32).long()
        out = torch.zeros(m, dtype=torch.float32, device=payload.device)
        out[idx] = values
        return out.to(dtype)

    def decode_into(self, payload, m, key, out):
        k = self.k(m)
        out.zero_()
        out[from_bytes(payload[4 * k:], torch.int32).long()] = from_bytes(payload[:4 * k], torch.float32).to(out.dtype)

    def delta(self, v):
        return self.k(v.numel()) / v.numel()


class RandomK(Codec):
    """k entries at indices drawn from the key: only the values travel; shared=True gives every
    worker the same indices (payloads then add, so averages can use allreduce)."""

    unbiased = False

    def __init__(self, ratio: float = 0.0, count: int = 0, shared: bool = False):
        if (ratio > 0) == (count > 0):
            raise ValueError("random-k needs exactly one of ratio in (0, 1] or count >= 1")
        if ratio > 1:
            raise ValueError(f"random-k ratio must be in (0, 1], got {ratio}")
        self.ratio, self.count, self.shared = ratio, count, shared
        self.additive = self.additive_float32 = shared  # shared indices: payloads sum as float32 values
        base = f"random-k:ratio={ratio:g}" if ratio else f"random-k:count={count}"
        self.spec = base + (",shared=true" if shared else "")

    def k(self, m):
        return _count("random-k", m, self.ratio, self.count)

    def indices(self, m, key, device):
        g = key.generator(device, self.shared)
        return torch.randperm(m, generator=g, device=device)[:self.k(m)].sort().values

    def payload_bytes(self, m):
        return 4 * self.k(m)

    def encode(self, v, key):
        return as_bytes(v.float()[self.indices(v.numel(), key, v.device)])

    def decode(self, payload, m, key, dtype):
        out = torch.zeros(m, dtype=torch.float32, device=payload.device)
        out[self.indices(m, key, payload.device)] = from_bytes(payload, torch.float32)
        return out.to(dtype)

    def decode_into(self, payload, m, key, out):
        out.zero_()
        out[self.indices(m, key, payload.device)] = from_bytes(payload, torch.float32).to(out.dtype)

    def delta(self, v):
        return self.k(v.numel()) / v.numel()  # in expectation over the draw


class QSGD(Codec):
    """Stochastic rounding of |v_i| / ||v|| to s levels; unbiased. Payload: the norm and one signed
    level per entry (int8, so s <= 127).

    scaled=true divides the result by tau = 1 + min(m / s^2, sqrt(m) / s), which makes it a
    contraction with delta = 1 / tau (biased): the form CHOCO-SGD needs.
    """

    unbiased = True

    def __init__(self, levels: int = 16, scaled: bool = False):
        if not 1 <= levels <= 127:
            raise ValueError(f"qsgd levels must be in 1..127, got {levels}")
        self.levels, self.scaled, self.unbiased = levels, scaled, not scaled
        self.spec = f"qsgd:levels={levels}" + (",scaled=true" if scaled else "")

    def tau(self, m: int) -> float:
        s = self.levels
        return 1 + min(m / s ** 2, math.sqrt(m) / s) if self.scaled else 1.0

    def payload_bytes(self, m):
        return FLOAT_BYTES + m

    def _levels(self, v, key):
        x = v.float()
        norm = torch.linalg.vector_norm(x).reshape(1)
        s = self.levels
        scaled = x.abs() / norm.clamp_min(1e-38) * s
        low = torch.floor(scaled)
        u = torch.rand(x.numel(), generator=key.generator(x.device), device=x.device)
        return norm, (low + (u < scaled - low).float()) * torch.sign(x)

    def encode(self, v, key):
        norm, level = self._levels(v, key)
        return torch.cat([as_bytes(norm), as_bytes(level.to(torch.int8))])

    def encode_into(self, v, key, out):
        norm, level = self._levels(v, key)
        out[:FLOAT_BYTES].copy_(as_bytes(norm))
        out[FLOAT_BYTES:].view(torch.int8).copy_(level)

    def decode(self, payload, m, key, dtype):
        norm = from_bytes(payload[:FLOAT_BYTES], torch.float32)
        level = from_bytes(payload[FLOAT_BYTES:], torch.int8).float()
        return (level * (norm / (self.levels * self.tau(m)))).to(dtype)

    def decode_into(self, payload, m, key, out):
        if out.dtype != torch.float32:
            return super().decode_into(payload, m, key, out)
        norm = from_bytes(payload[:FLOAT_BYTES], torch.float32)
        level = from_bytes(payload[FLOAT_BYTES:], torch.int8).float()
        torch.mul(level, norm / (self.levels * self.tau(m)), out=out)

    def delta(self, v):
        return 1 / self.tau(v.numel()) if self.scaled else None


class LowRank:
    """PowerSGD's rank-r factors: not a per-row codec (two rounds of averaging, shared Q); C-SGD only."""

    low_rank = True

    def __init__(self, rank: int = 2):
        if rank < 1:
            raise ValueError(f"powersgd rank must be >= 1, got {rank}")
        self.rank, self.spec = rank, f"powersgd:rank={rank}"


def parse_codec(spec: str):
    """`none`, `fp16`, `bf16`, `fp16:sum=half`, `int8:block=256`, `sign`, `sign:block=1024`, `top-k:ratio=0.01`,
    `top-k:count=100`, `random-k:ratio=0.1[,shared=true]`, `qsgd:levels=16[,scaled=true]`,
    `powersgd:rank=2`, in the grammar every spec shares (topologies.options). ValueError names the problem."""
    from topologies.options import as_bool, split_spec
    name, options = split_spec(spec, "codec")
    given = set(options)

    def num(key, kind, default):
        if key not in options:
            return default
        text = options.pop(key)
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"codec {name}: {key} must be {kind.__name__}, got {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"codec {name}: {key} must be a finite number, got {text!r}")
        return value

    def one_of_ratio_or_count():
        if "ratio" in options and "count" in options:
            raise ValueError(f"codec {name}: give ratio or count, not both")
        ratio, count = num("ratio", float, 0.0), num("count", int, 0)
        if "ratio" in given and not 0 < ratio <= 1:
            raise ValueError(f"{name} ratio must be in (0, 1], got {ratio}")
        if "count" in given and count < 1:
            raise ValueError(f"{name} count must be >= 1, got {count}")
        return ratio, count

    if name == "none":
        codec = Identity()
    elif name in ("fp16", "bf16"):
        how = options.pop("sum", "exact")
        if how not in ("exact", "half"):
            raise ValueError(f"codec {name}: sum must be exact or half, got {how!r}")
        codec = Cast(torch.float16 if name == "fp16" else torch.bfloat16, sum_in_half=how == "half")
    elif name == "int8":
        codec = Int8(num("block", int, 256))
    elif name == "sign":
        codec = Sign(num("block", int, 0))
    elif name == "top-k":
        codec = TopK(*one_of_ratio_or_count())
    elif name == "random-k":
        shared = as_bool("random-k", "shared", options.pop("shared", "false"))
        codec = RandomK(*one_of_ratio_or_count(), shared)
    elif name == "powersgd":
        codec = LowRank(num("rank", int, 2))
    elif name == "qsgd":
        scaled = as_bool("qsgd", "scaled", options.pop("scaled", "false"))
        codec = QSGD(num("levels", int, 16), scaled)
    else:
        raise ValueError(f"unknown codec {name!r} (known: none, fp16, bf16, int8, sign, top-k, random-k, qsgd, "
                         f"powersgd)")
    if options:
        raise ValueError(f"codec {name} takes no option {next(iter(options))!r}")
    return codec

"""The compressed mixing step: every worker's row travels as its codec payload, never as the dense tensor.

    decoded_i = decode(encode(x_i))          (on the device the buffer lives on)
    mixed_i   = sum_j W[i, j] decoded_j

Sparse W: payloads go to the out-neighbours (one message per neighbour and buffer), each
receiver decodes them (random codecs recreate their draws from (seed, step, sender)) and sums in
the same fixed order as the dense step. All-1/n W: the payloads are allgathered and every rank
decodes and averages them in worker order. Identity: nothing moves.

What a step costs is what it cannot avoid: each row encoded once, straight into the buffer that is
sent; the payloads' exchange, started before this rank decodes its own; each payload decoded once
per rank that needs it, straight into the rows the weighted sum reads; the weighted sum, written
into the tensor returned. Send, receive and decode buffers belong to the mixer and are reused from
step to step; only the returned tensors are new (on huge pages when large: dsgd.comm.memory).

Several matrices at once (compressed_mix_many): the payloads travel once over the union of their
graphs and each matrix's sums are taken from the same decoded rows; CHOCO-SGD on a time-varying
graph keeps one accumulator per matrix of the period this way.

fp16 / bf16 with sum=half: an average is one allreduce of the half-precision payloads, summed in
half precision by the backend, as PyTorch's fp16_compress_hook does (see _average_in_half).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dsgd.compress import Key

from .base import Timer
from .mixer import _rows


def _encode_rows(mixer, codec, b: torch.Tensor, seed: int, step: int, first: int, part: int) -> torch.Tensor:
    """(K, payload bytes): this rank's rows encoded into a send buffer of the mixer's (give it back
    with mixer._release_recv once sent)."""
    m = b.shape[1]
    out = mixer._take(b.shape[0], codec.payload_bytes(m), torch.uint8, b.device)
    for k in range(b.shape[0]):
        codec.encode_into(b[k], Key(seed, step, first + k, part), out[k])
    return out


def _decode_rows_into(codec, payloads: torch.Tensor, workers: Sequence[int], m: int, seed: int, step: int,
                      part: int, out: torch.Tensor) -> torch.Tensor:
    for r, w in enumerate(workers):
        codec.decode_into(payloads[r], m, Key(seed, step, w, part), out[r])
    return out


def _decode_own(mixer, codec, payloads: torch.Tensor, first: int, b: torch.Tensor, seed: int, step: int,
                part: int) -> torch.Tensor:
    """decode(encode(x)) of this rank's rows: a new tensor, returned to the caller."""
    out = mixer.results.take(b.shape, b.dtype, b.device)
    return _decode_rows_into(codec, payloads, range(first, first + b.shape[0]), b.shape[1], seed, step, part, out)


def _weighted_rows(mixer, plan, own: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """Each slot's sum over its sources in the plan's order (own term first): a new tensor."""
    K = own.shape[0]
    out = mixer.results.take(own.shape, own.dtype, own.device)
    for slot, terms in enumerate(plan.rows):
        (s0, w_self), rest = terms[0], terms[1:]
        torch.mul(own[s0], w_self, out=out[slot])
        for s, w in rest:
            out[slot].add_(own[s] if s < K else neighbours[s - K], alpha=w)
    return out


def _post_exchange(mixer, plan, payloads: Sequence[torch.Tensor]):
    """Send each buffer's payload rows to the peers that read them; (requests, receive buffers)."""
    requests, received = [], []
    for i, p in enumerate(payloads):
        recv = mixer._take(plan.rows_received, p.shape[1], p.dtype, p.device)
        sends = [(peer, _rows(p, slots)) for peer, slots in plan.send_to]
        recvs, r0 = [], 0
        for peer, workers in plan.recv_from:
            recvs.append((peer, recv[r0:r0 + len(workers)]))
            r0 += len(workers)
        with Timer(mixer.stats):
            requests.append(mixer.comm.iexchange(sends, recvs, tag=i))
        received.append(recv)
    return requests, received


def compressed_mix(mixer, buffers: Sequence[torch.Tensor], W: np.ndarray, codec, seed: int, step: int):
    """(decoded, mixed): per buffer, this rank's decoded rows and W applied to everyone's decoded rows."""
    mixer._check(buffers)
    plan = mixer.plan(W, exchange_only=True)
    K, rank, comm = mixer.K, mixer.comm.rank, mixer.comm
    first = rank * K
    mixer.stats.count_step(plan.kind)
    payloads = [_encode_rows(mixer, codec, b, seed, step, first, i) for i, b in enumerate(buffers)]
    row_bytes = sum(p.shape[1] for p in payloads)
    own = [(p, b, i) for i, (p, b) in enumerate(zip(payloads, buffers))]
    if plan.kind != "sparse":
        decoded = [_decode_own(mixer, codec, p, first, b, seed, step, i) for p, b, i in own]
        if plan.kind == "identity":
            mixed = [mixer.results.take(d.shape, d.dtype, d.device).copy_(d) for d in decoded]
        else:
            mixer.worker_bytes_sent += row_bytes
            if getattr(codec, "additive_float32", False):
                mixed = _average_by_allreduce(mixer, codec, payloads, buffers, seed, step)
            elif getattr(codec, "sum_in_half", False) and getattr(comm, "sums_half", lambda dtype: False)(codec.dtype):
                mixed = _average_in_half(mixer, codec, payloads, buffers)
            else:
                mixed = [_average_of_everyone(mixer, codec, p, b, seed, step, i)
                         for i, (p, b) in enumerate(zip(payloads, buffers))]
        mixer._release_recv(payloads)
        return decoded, mixed
    mixer._count_sparse(plan, row_bytes)
    requests, received = _post_exchange(mixer, plan, payloads)
    # this rank's own rows decode while the payloads travel
    decoded = [_decode_own(mixer, codec, p, first, b, seed, step, i) for p, b, i in own]
    senders = [w for _, workers in plan.recv_from for w in workers]
    mixed, scratch = [], []
    for i, (b, d, request, recv) in enumerate(zip(buffers, decoded, requests, received)):
        with Timer(mixer.stats):
            request.wait()
        neighbours = mixer._take(len(senders), b.shape[1], b.dtype, b.device)
        scratch.append(neighbours)
        _decode_rows_into(codec, recv, senders, b.shape[1], seed, step, i, neighbours)
        mixed.append(_weighted_rows(mixer, plan, d, neighbours))
    mixer._release_recv(payloads + received + scratch)
    return decoded, mixed


def _average_of_everyone(mixer, codec, p: torch.Tensor, b: torch.Tensor, seed: int, step: int, part: int):
    """Allgather the payloads, decode every worker's in float64 and take their mean in worker order."""
    with Timer(mixer.stats):
        everyone = mixer.comm.allgather_rows(p)  # (n, payload bytes), worker order
    rows = mixer._take(mixer.n_workers, b.shape[1], torch.float64, b.device)
    _decode_rows_into(codec, everyone, range(mixer.n_workers), b.shape[1], seed, step, part, rows)
    out = mixer.results.take(b.shape, b.dtype, b.device)
    out.copy_(rows.mean(dim=0, keepdim=True).expand(b.shape[0], -1))
    mixer._release_recv([rows])
    return out


def _weighted_sums(mixer, W: np.ndarray, first: int, own: torch.Tensor, rows: dict) -> torch.Tensor:
    """Rows first.. of W @ X from this rank's decoded rows and received ones, summed like the dense
    step: own term first, then the others by ascending worker index."""
    K = own.shape[0]
    out = mixer.results.take(own.shape, own.dtype, own.device)
    for slot in range(K):
        i = first + slot
        torch.mul(own[slot], float(W[i, i]), out=out[slot])
        for j in np.flatnonzero(W[i]):
            if j != i:
                out[slot].add_(own[j - first] if first <= j < first + K else rows[int(j)], alpha=float(W[i, j]))
    return out


def _average_by_allreduce(mixer, codec, payloads, buffers, seed: int, step: int):
    """Payloads that add (float32 values at indices every worker shares): one allreduce of the sum."""
    K, n = mixer.K, mixer.n_workers
    mixed = []
    for i, (p, b) in enumerate(zip(payloads, buffers)):
        total = p.contiguous().view(torch.float32).sum(dim=0)  # this rank's K payloads, as values
        with Timer(mixer.stats):
            mixer.comm.allreduce_sum_(total)
        mean = codec.decode(total.div_(n).view(torch.uint8), b.shape[1], Key(seed, step, 0, i), b.dtype)
        mixed.append(mean.expand(K, -1).clone())
    return mixed


def _average_in_half(mixer, codec, payloads, buffers):
    """fp16 / bf16 with sum=half, on a backend that sums half precision: each worker's payload
    divided by n (rounded to half precision, as PyTorch's fp16_compress_hook divides), this rank's K
    of them summed, then one allreduce of the half-precision sum. Every rank gets the same values;
    they depend on the backend's order of summation, so they are not the same bits in every layout."""
    n = mixer.n_workers
    mixed = []
    for p, b in zip(payloads, buffers):
        halves = p.view(codec.dtype)                       # (K, m): the payloads as values
        buf = mixer._take(1, b.shape[1], codec.dtype, b.device)
        total = buf[0]
        torch.div(halves[0], n, out=total)
        for k in range(1, halves.shape[0]):
            total.add_(halves[k] / n)
        with Timer(mixer.stats):
            mixer.comm.allreduce_sum_(total)
        out = mixer.results.take(b.shape, b.dtype, b.device)
        out.copy_(total.expand(b.shape[0], -1))
        mixer._release_recv([buf])
        mixed.append(out)
    return mixed


def compressed_mix_many(mixer, buffers: Sequence[torch.Tensor], Ws: Sequence[np.ndarray], codec, seed: int,
                        step: int):
    """(decoded, [mixed for each W]): the payloads travel once, over the union of the Ws' graphs."""
    if len(Ws) == 1:
        decoded, mixed = compressed_mix(mixer, buffers, Ws[0], codec, seed, step)
        return decoded, [mixed]
    mixer._check(buffers)
    union = np.mean([np.asarray(W, dtype=np.float64) for W in Ws], axis=0)
    plan = mixer.plan(union)
    K, comm = mixer.K, mixer.comm
    first = comm.rank * K
    mixer.stats.count_step(plan.kind)
    payloads = [_encode_rows(mixer, codec, b, seed, step, first, i) for i, b in enumerate(buffers)]
    row_bytes = sum(p.shape[1] for p in payloads)
    rows = [{} for _ in buffers]
    scratch = []
    if plan.kind == "sparse":
        mixer._count_sparse(plan, row_bytes)
        requests, received = _post_exchange(mixer, plan, payloads)
        scratch += received
    decoded = [_decode_own(mixer, codec, p, first, b, seed, step, i) for i, (p, b) in enumerate(zip(payloads, buffers))]
    if plan.kind == "average":
        mixer.worker_bytes_sent += row_bytes
        for i, (p, b) in enumerate(zip(payloads, buffers)):
            with Timer(mixer.stats):
                everyone = comm.allgather_rows(p)
            dec = mixer._take(mixer.n_workers, b.shape[1], b.dtype, b.device)
            scratch.append(dec)
            _decode_rows_into(codec, everyone, range(mixer.n_workers), b.shape[1], seed, step, i, dec)
            rows[i] = {j: dec[j] for j in range(mixer.n_workers)}
    elif plan.kind == "sparse":
        senders = [w for _, workers in plan.recv_from for w in workers]
        for i, (b, request, recv) in enumerate(zip(buffers, requests, received)):
            with Timer(mixer.stats):
                request.wait()
            if senders:
                dec = mixer._take(len(senders), b.shape[1], b.dtype, b.device)
                scratch.append(dec)
                _decode_rows_into(codec, recv, senders, b.shape[1], seed, step, i, dec)
                rows[i] = {j: dec[r] for r, j in enumerate(senders)}
    mixed = [[_weighted_sums(mixer, W, first, d, r) for d, r in zip(decoded, rows)] for W in Ws]
    mixer._release_recv(payloads + scratch)
    return decoded, mixed

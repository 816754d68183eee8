"""The compressed mixing step: every worker's row travels as its codec payload, never as the dense tensor.

    decoded_i = decode(encode(x_i))          (on the device the buffer lives on)
    mixed_i   = sum_j W[i, j] decoded_j

Sparse W: payloads go to the out-neighbours (one message per neighbour and buffer), each
receiver decodes them (random codecs recreate their draws from (seed, step, sender)) and sums in
the same fixed order as the dense step. All-1/n W: the payloads are allgathered and every rank
decodes and averages them in worker order. Identity: nothing moves.

Several matrices at once (compressed_mix_many): the payloads travel once over the union of their
graphs and each matrix's sums are taken from the same decoded rows; CHOCO-SGD on a time-varying
graph keeps one accumulator per matrix of the period this way.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dsgd.compress import Key

from .base import Timer


def _encode_rows(codec, b: torch.Tensor, seed: int, step: int, first: int, part: int) -> torch.Tensor:
    return torch.stack([codec.encode(b[k], Key(seed, step, first + k, part)) for k in range(b.shape[0])])


def _decode_rows(codec, payloads: torch.Tensor, workers: Sequence[int], m: int, seed: int, step: int, part: int,
                 dtype: torch.dtype) -> torch.Tensor:
    return torch.stack([codec.decode(payloads[r], m, Key(seed, step, w, part), dtype)
                        for r, w in enumerate(workers)])


def compressed_mix(mixer, buffers: Sequence[torch.Tensor], W: np.ndarray, codec, seed: int, step: int):
    """(decoded, mixed): per buffer, this rank's decoded rows and W applied to everyone's decoded rows."""
    mixer._check(buffers)
    plan = mixer.plan(W, exchange_only=True)
    K, rank, comm = mixer.K, mixer.comm.rank, mixer.comm
    first = rank * K
    mixer.stats.count_step(plan.kind)
    payloads = [_encode_rows(codec, b, seed, step, first, i) for i, b in enumerate(buffers)]
    decoded = [_decode_rows(codec, p, range(first, first + K), b.shape[1], seed, step, i, b.dtype)
               for i, (p, b) in enumerate(zip(payloads, buffers))]
    row_bytes = sum(p.shape[1] for p in payloads)
    if plan.kind == "identity":
        return decoded, [d.clone() for d in decoded]
    if plan.kind == "average":
        mixer.worker_bytes_sent += row_bytes
        if getattr(codec, "additive_float32", False):
            return decoded, _average_by_allreduce(mixer, codec, payloads, buffers, seed, step)
        mixed = []
        for i, (p, b) in enumerate(zip(payloads, buffers)):
            with Timer(mixer.stats):
                everyone = comm.allgather_rows(p)  # (n, payload bytes), worker order
            rows = _decode_rows(codec, everyone, range(mixer.n_workers), b.shape[1], seed, step, i, torch.float64)
            mixed.append(rows.mean(dim=0, keepdim=True).to(b.dtype).expand(K, -1).clone())
        return decoded, mixed
    mixer._count_sparse(plan, row_bytes)
    requests, received = [], []
    for i, p in enumerate(payloads):
        recv = mixer._take_recv(p, plan.rows_received)
        sends = [(peer, p[list(slots)] if len(slots) > 1 else p[slots[0]:slots[0] + 1]) for peer, slots in plan.send_to]
        recvs, r0 = [], 0
        for peer, workers in plan.recv_from:
            recvs.append((peer, recv[r0:r0 + len(workers)]))
            r0 += len(workers)
        with Timer(mixer.stats):
            requests.append(comm.iexchange(sends, recvs, tag=i))
        received.append(recv)
    senders = [w for _, workers in plan.recv_from for w in workers]
    mixed = []
    for i, (b, d, request, recv) in enumerate(zip(buffers, decoded, requests, received)):
        with Timer(mixer.stats):
            request.wait()
        neighbours = _decode_rows(codec, recv, senders, b.shape[1], seed, step, i, b.dtype) if senders else recv
        out = d.clone()
        mixer._combine(plan, out, neighbours, slice(0, b.shape[1]))
        mixed.append(out)
    mixer._release_recv(received)
    return decoded, mixed


def _weighted_sums(W: np.ndarray, first: int, own: torch.Tensor, rows: dict) -> torch.Tensor:
    """Rows first.. of W @ X from this rank's decoded rows and received ones, summed like the dense
    step: own term first, then the others by ascending worker index."""
    K = own.shape[0]
    out = torch.empty_like(own)
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
    payloads = [_encode_rows(codec, b, seed, step, first, i) for i, b in enumerate(buffers)]
    decoded = [_decode_rows(codec, p, range(first, first + K), b.shape[1], seed, step, i, b.dtype)
               for i, (p, b) in enumerate(zip(payloads, buffers))]
    row_bytes = sum(p.shape[1] for p in payloads)
    rows = [{} for _ in buffers]
    if plan.kind == "average":
        mixer.worker_bytes_sent += row_bytes
        for i, (p, b) in enumerate(zip(payloads, buffers)):
            with Timer(mixer.stats):
                everyone = comm.allgather_rows(p)
            dec = _decode_rows(codec, everyone, range(mixer.n_workers), b.shape[1], seed, step, i, b.dtype)
            rows[i] = {j: dec[j] for j in range(mixer.n_workers)}
    elif plan.kind == "sparse":
        mixer._count_sparse(plan, row_bytes)
        senders = [w for _, workers in plan.recv_from for w in workers]
        for i, (p, b) in enumerate(zip(payloads, buffers)):
            recv = torch.empty(plan.rows_received, p.shape[1], dtype=p.dtype, device=p.device)
            sends = [(peer, p[list(slots)]) for peer, slots in plan.send_to]
            recvs, r0 = [], 0
            for peer, workers in plan.recv_from:
                recvs.append((peer, recv[r0:r0 + len(workers)]))
                r0 += len(workers)
            with Timer(mixer.stats):
                comm.iexchange(sends, recvs, tag=i).wait()
            if senders:
                dec = _decode_rows(codec, recv, senders, b.shape[1], seed, step, i, b.dtype)
                rows[i] = {j: dec[r] for r, j in enumerate(senders)}
    mixed = [[_weighted_sums(W, first, d, r) for d, r in zip(decoded, rows)] for W in Ws]
    return decoded, mixed

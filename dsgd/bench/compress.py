"""Compressed against dense mixing, side by side in one run: per codec, the step against the sum of the
parts it cannot avoid, bytes handed to the network, and the step against the dense step.

    mpirun -np 4 --oversubscribe python -m mpi4py -m dsgd.bench compress --json
    mpirun -np 4 --oversubscribe python -m mpi4py -m dsgd.bench compress --numel 1000 --codecs sign --repeats 2 --json

One report from rank 0. Times are medians over --repeats, the maximum over ranks (a step waits
for its slowest rank). Per codec and repetition, each after a barrier:

  encode_s     one row encoded into a preallocated payload buffer (Codec.encode_into)
  decode_s     one payload decoded into a preallocated row (Codec.decode_into)
  exchange_s   the payloads' exchange alone: this rank's payload to each out-neighbour, each
               in-neighbour's received, through the same communicator, into preallocated buffers
  sum_s        the weighted sum alone: the step's own term and its decoded neighbours, summed with
               their weights in the step's order into a preallocated row
  step_s       the whole compressed step, Mixer.compressed, as the rules call it

parts_s = encode_s + decodes x decode_s + exchange_s + sum_s, where decodes = 1 + in-degree (each
payload decoded once per rank that needs it: its own, and each in-neighbour's); parts_ratio =
step_s / parts_s is the target (<= 1.2): what the step costs beyond its parts is copies,
allocations and bookkeeping. step_ratio = step_s / dense_step_s and bytes_ratio set the codec
beside the dense step (Mixer.mix_) on the same buffer; absolute times depend on the machine and
its load, a ratio less.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from dsgd.bench.common import load_average, median, now, positive
from dsgd.comm.memory import host_zeros
from dsgd.compress import Key, parse_codec

CODECS = ["fp16", "bf16", "int8:block=256", "sign", "top-k:ratio=0.01", "random-k:ratio=0.01", "qsgd:levels=16"]
PARTS_TARGET = 1.2


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m dsgd.bench compress")
    ap.add_argument("--numel", type=positive, nargs="+", default=[270_000, 11_000_000], help="floats per worker")
    ap.add_argument("--codecs", nargs="+", default=CODECS)
    ap.add_argument("--topology", default="ring")
    ap.add_argument("--repeats", type=positive, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    for spec in args.codecs:
        try:
            parse_codec(spec)
        except ValueError as e:
            ap.error(f"--codecs {spec}: {e}")
    return args


def slowest(world, seconds: list[float]) -> float:
    from mpi4py import MPI
    return world.allreduce(median(seconds), op=MPI.MAX)


def measure(world, mixer, W, codec, x: torch.Tensor, repeats: int) -> dict:
    """The codec's parts and whole step on row x (1, m), see the module's docstring."""
    m, rank = x.shape[1], world.rank
    plan = mixer.plan(W, exchange_only=True)
    key = Key(0, 0, rank)
    pb = codec.payload_bytes(m)
    # buffers allocated as the step's own are (dsgd.comm.memory)
    payload = host_zeros(1, pb, dtype=torch.uint8)
    received = host_zeros(plan.rows_received, pb, dtype=torch.uint8)
    rows = host_zeros(1 + plan.rows_received, m)    # this rank's decoded row, then its neighbours'
    total = host_zeros(1, m)
    sends = [(peer, payload) for peer, _ in plan.send_to]
    recvs, r0 = [], 0
    for peer, workers in plan.recv_from:
        recvs.append((peer, received[r0:r0 + len(workers)]))
        r0 += len(workers)
    (_, w_self), rest = plan.rows[0][0], plan.rows[0][1:]
    seconds = {k: [] for k in ("encode_s", "decode_s", "exchange_s", "sum_s", "step_s")}
    sent = []
    for r in range(repeats + 1):  # the first round warms up
        t0 = time.perf_counter()
        codec.encode_into(x[0], key, payload[0])
        t1 = time.perf_counter()
        codec.decode_into(payload[0], m, key, rows[0])
        t2 = time.perf_counter()
        world.Barrier()
        t3 = time.perf_counter()
        mixer.comm.iexchange(sends, recvs, tag=7).wait()
        t4 = time.perf_counter()
        torch.mul(rows[0], w_self, out=total[0])
        for s, w in rest:
            total[0].add_(rows[s], alpha=w)
        t5 = time.perf_counter()
        before = mixer.stats.bytes_sent
        world.Barrier()
        t6 = time.perf_counter()
        mixer.compressed([x], W, codec, 0, r)
        t7 = time.perf_counter()
        if r:
            for k, v in zip(seconds, (t1 - t0, t2 - t1, t4 - t3, t5 - t4, t7 - t6)):
                seconds[k].append(v)
            sent.append(mixer.stats.bytes_sent - before)
    return {**{k: slowest(world, v) for k, v in seconds.items()}, "decodes": 1 + plan.rows_received,
            "bytes_sent_per_rank": int(median(sent)), "payload_bytes_per_row": pb}


def dense_step(world, mixer, W, x: torch.Tensor, repeats: int) -> dict:
    step, sent = [], []
    for r in range(repeats + 1):
        before = mixer.stats.bytes_sent
        world.Barrier()
        t0 = time.perf_counter()
        mixer.mix_([x], W)
        if r:
            step.append(time.perf_counter() - t0)
            sent.append(mixer.stats.bytes_sent - before)
    return {"step_s": slowest(world, step), "bytes_sent_per_rank": int(median(sent))}


def codec_row(m: int, spec: str, measured: dict, dense: dict) -> dict:
    """One (numel, codec) result: the codec's measure() with the sum of its parts and the step against
    it, beside the dense step's time and bytes."""
    row = {"numel": m, "codec": spec, **measured}
    row["parts_s"] = row["encode_s"] + row["decodes"] * row["decode_s"] + row["exchange_s"] + row["sum_s"]
    row["parts_ratio"] = row["step_s"] / row["parts_s"]
    row["parts_target"] = PARTS_TARGET
    row["met"] = row["parts_ratio"] <= PARTS_TARGET
    row["dense_step_s"], row["dense_bytes_per_rank"] = dense["step_s"], dense["bytes_sent_per_rank"]
    row["step_ratio"] = row["step_s"] / dense["step_s"]
    row["bytes_ratio"] = row["bytes_sent_per_rank"] / dense["bytes_sent_per_rank"]
    return row


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from mpi4py import MPI

    import topologies
    from dsgd.comm import Mixer, classify
    from dsgd.comm.mpi import MPICommunicator
    world = MPI.COMM_WORLD
    mixer = Mixer(MPICommunicator(world.Dup()), 1)
    W = topologies.from_spec(args.topology, world.size).W(0)
    kind = classify(np.asarray(W))
    if kind != "sparse":  # an average is one allreduce, the identity moves nothing: no exchange to compress
        if world.rank == 0:
            print(f"python -m dsgd.bench compress: error: --topology {args.topology} on {world.size} ranks is "
                  f"{'the plain average (one allreduce)' if kind == 'average' else 'the identity'}, not a neighbour "
                  f"exchange; use more ranks or another topology", file=sys.stderr, flush=True)
        return 2
    report = {"benchmark": "compress", "world_size": world.size, "topology": args.topology, "date": now(),
              "torch_threads": torch.get_num_threads(), "load_average": load_average(), "results": []}
    for m in args.numel:
        x = host_zeros(1, m)   # as the trainer's flat buffers are allocated
        x.copy_(torch.randn(1, m, generator=torch.Generator().manual_seed(world.rank)))
        dense = dense_step(world, mixer, W, host_zeros(1, m).copy_(x), args.repeats)
        for spec in args.codecs:
            measured = measure(world, mixer, W, parse_codec(spec), x, args.repeats)
            report["results"].append(codec_row(m, spec, measured, dense))
    if world.rank == 0:
        if args.json:
            print(json.dumps(report))
        else:
            for r in report["results"]:
                ms = {k: f"{r[k] * 1e3:.2f} ms" for k in ("step_s", "encode_s", "decode_s", "exchange_s", "sum_s")}
                print(f"{r['numel']:>10} {r['codec']:<22} step {ms['step_s']} = x{r['parts_ratio']:.2f} its parts "
                      f"({'met' if r['met'] else 'NOT met'})  x{r['step_ratio']:.2f} dense  bytes x{r['bytes_ratio']:.4f}  "
                      f"encode {ms['encode_s']}  decode {ms['decode_s']} x{r['decodes']}  exchange {ms['exchange_s']}  "
                      f"sum {ms['sum_s']}")
    return 0

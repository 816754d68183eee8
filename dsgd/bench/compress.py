"""Compressed against dense mixing, side by side in one run: per codec, encode / transfer / decode
seconds, bytes handed to the network, and the whole step against the dense step.

    mpirun -np 4 --oversubscribe python -m mpi4py -m dsgd.bench compress --json
    mpirun -np 4 --oversubscribe python -m mpi4py -m dsgd.bench compress --numel 1000 --codecs sign --repeats 2 --json

One report from rank 0. Times are medians over --repeats, the maximum over ranks (a step waits
for its slowest rank); the ratio step_s / dense_step_s is the figure to read, absolute times
depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from dsgd.bench.common import load_average, median, now, positive
from dsgd.compress import Key, parse_codec

CODECS = ["fp16", "bf16", "int8:block=256", "sign", "top-k:ratio=0.01", "random-k:ratio=0.01", "qsgd:levels=16"]


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


def measure(world, mixer, W, codec, m: int, repeats: int) -> dict:
    x = torch.randn(1, m)
    key = Key(0, 0, world.rank)
    enc, dec, step, sent = [], [], [], []
    for r in range(repeats + 1):  # the first round warms up
        t0 = time.perf_counter()
        payload = codec.encode(x[0], key)
        t1 = time.perf_counter()
        codec.decode(payload, m, key, x.dtype)
        t2 = time.perf_counter()
        before = mixer.stats.bytes_sent
        world.Barrier()
        t3 = time.perf_counter()
        mixer.compressed([x], W, codec, 0, r)
        t4 = time.perf_counter()
        if r:
            enc.append(t1 - t0)
            dec.append(t2 - t1)
            step.append(t4 - t3)
            sent.append(mixer.stats.bytes_sent - before)
    return {"encode_s": slowest(world, enc), "decode_s": slowest(world, dec), "step_s": slowest(world, step),
            "bytes_sent_per_rank": int(median(sent)), "payload_bytes_per_row": codec.payload_bytes(m)}


def dense_step(world, mixer, W, m: int, repeats: int) -> dict:
    x = torch.randn(1, m)
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
    """One (numel, codec) result: the codec's measure() beside the dense step's, with what the codec
    saves in bytes and costs in time relative to it, and the step's time left after encode and decode."""
    row = {"numel": m, "codec": spec, **measured}
    row["transfer_s"] = max(0.0, row["step_s"] - row["encode_s"] - row["decode_s"])
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
        dense = dense_step(world, mixer, W, m, args.repeats)
        for spec in args.codecs:
            measured = measure(world, mixer, W, parse_codec(spec), m, args.repeats)
            report["results"].append(codec_row(m, spec, measured, dense))
    if world.rank == 0:
        if args.json:
            print(json.dumps(report))
        else:
            for r in report["results"]:
                print(f"{r['numel']:>10} {r['codec']:<22} step x{r['step_ratio']:.2f}  bytes x{r['bytes_ratio']:.4f}  "
                      f"encode {r['encode_s'] * 1e3:.2f} ms  decode {r['decode_s'] * 1e3:.2f} ms")
    return 0

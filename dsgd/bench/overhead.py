"""One worker, no communication: dsgd's training step against a plain PyTorch loop on the same model and batches.

    python -m dsgd.bench overhead --json
    python -m dsgd.bench overhead --model resnet20 --device cuda --dataset synthetic

The dsgd side is the trainer's own step, Run.train_step, for C-SGD on one worker (its mixing
step is the identity): learning-rate schedule, the batch drawn by local_batch, compute_grads,
the loss and accuracy bookkeeping, optimizer_step. The plain side is the loop PyTorch users
write: zero_grad, forward, cross_entropy, backward, SGD step, on batches precomputed with the
same local_batch calls, so both see identical data and start from identical weights. The
sides alternate step by step (A B, then B A), and a third timing takes the data path alone.
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from dsgd.bench.common import build_run, finish, load_average, median, now, report_main, step_comparison_options, timed
from dsgd.comm import Mixer, SelfCommunicator
from dsgd.models import MODELS, build_model

TARGET = 1.05
LR, MOMENTUM, SEED = 0.05, 0.9, 0
NOTES = [
    "dsgd_s: Run.train_step (C-SGD, one worker, data path included); plain_s: zero_grad, forward, "
    "cross_entropy, backward, step on a precomputed batch; data_s: local_batch alone; all seconds per step, "
    "medians over repetitions",
    "ratio = dsgd_s / plain_s (target <= 1.05); ratio_excluding_data = (dsgd_s - data_s) / plain_s",
]


def plain_setup(run, device):
    """The same initial weights as the trainer's workers, and PyTorch's SGD with the same settings."""
    plain = build_model(run.cfg.model.model, run.train_set.in_channels, run.train_set.num_classes,
                        run.train_set.image_size, norm=run.cfg.model.norm).to(device)
    plain.load_state_dict(run.workers.models[0].state_dict())
    plain.train()
    return plain, torch.optim.SGD(plain.parameters(), lr=LR, momentum=MOMENTUM)


def plain_step(model, opt, x, y) -> None:
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


def figures(times: dict[str, list[float]]) -> dict:
    """The report's numbers from the timed steps of each side ("dsgd", "plain", "data"): medians,
    the ratio to the target and whether it is met."""
    dsgd_s, plain_s, data_s = (median(times[k]) for k in ("dsgd", "plain", "data"))
    ratio = dsgd_s / plain_s
    return {"dsgd_s": dsgd_s, "plain_s": plain_s, "data_s": data_s, "ratio": ratio,
            "ratio_excluding_data": (dsgd_s - data_s) / plain_s, "target": TARGET, "met": ratio <= TARGET}


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dsgd.bench overhead", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), default="cnn")
    ap.add_argument("--norm", choices=("bn", "gn", "none"), default="bn")
    ap.add_argument("--dataset", choices=("fashion-mnist", "cifar10", "synthetic"), default="fashion-mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    step_comparison_options(ap)
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    started, load = now(), load_average()  # as the measurement starts
    flags = ["--algorithm", "csgd", "--model", args.model, "--norm", args.norm, "--dataset", args.dataset,
             "--batch-size", str(args.batch_size), "--lr", str(LR), "--momentum", str(MOMENTUM),
             "--seed", str(SEED), "--device", args.device, "--threads", str(args.threads), "--vectorize", "off"]
    if args.data_dir:
        flags += ["--data-dir", args.data_dir]
    trainer, tmp = build_run(flags, Mixer(SelfCommunicator(), workers_per_rank=1))
    device = trainer.device
    plain, opt = plain_setup(trainer, device)
    steps = args.warmup + args.repeats
    batches = [trainer.batch_of(t)(0) for t in range(steps)]  # what the trainer's worker 0 draws at step t
    times = {"dsgd": [], "plain": [], "data": []}
    for t in range(steps):
        sides = [("dsgd", lambda: trainer.train_step(t)), ("plain", lambda: plain_step(plain, opt, *batches[t]))]
        for name, fn in (sides if t % 2 == 0 else sides[::-1]):
            seconds = timed(fn, device)
            if t >= args.warmup:
                times[name].append(seconds)
        seconds = timed(lambda: trainer.batch_of(t)(0), device)
        if t >= args.warmup:
            times["data"].append(seconds)
    finish(trainer, tmp)
    return {"benchmark": "overhead", "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "model": args.model, "norm": args.norm, "dataset": args.dataset, "batch_size": args.batch_size,
            "torch_threads": torch.get_num_threads(), "date": started, "load_average": load,
            "warmup": args.warmup, "repeats": args.repeats, **figures(times), "notes": list(NOTES)}


def table(r: dict) -> str:
    return "\n".join([
        f"overhead: {r['model']} (norm {r['norm']}) on {r['device_name']}, batch {r['batch_size']}, "
        f"{r['torch_threads']} torch threads, {r['date']}, load {r['load_average']:.1f}",
        f"dsgd step   {r['dsgd_s'] * 1e3:8.3f} ms   (Run.train_step, data path included)",
        f"plain step  {r['plain_s'] * 1e3:8.3f} ms   (zero_grad, forward, backward, step)",
        f"data path   {r['data_s'] * 1e3:8.3f} ms   (local_batch alone)",
        f"ratio {r['ratio']:.3f} (target <= {r['target']}: {'met' if r['met'] else 'NOT met'}); "
        f"without the data path {r['ratio_excluding_data']:.3f}",
    ])


def main(argv: list[str] | None = None) -> int:
    return report_main(argv, parse_args, run, table)


if __name__ == "__main__":
    sys.exit(main())

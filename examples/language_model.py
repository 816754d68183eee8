"""A small GPT-style byte-level language model, trained with AdamW by local AdamW, QSR or C-SGD
over MPI ranks through the library; validation loss and perplexity of the average model.

    mpirun -np 4 --oversubscribe python -m mpi4py examples/language_model.py --algorithm qsr --steps 300

The corpus is the Debian package `fortunes` (apt-get install fortunes), 2.7 MB of English text.
"""
import argparse
import math

import torch
import torch.nn.functional as F

import dsgd
from dsgd.data.text import load_fortunes
from dsgd.models import GPT  # the model --model gpt trains from the command line; any nn.Module works here

ap = argparse.ArgumentParser()
ap.add_argument("--algorithm", choices=["csgd", "local", "qsr"], default="local")
ap.add_argument("--steps", type=int, default=300)
ap.add_argument("--period", type=int, default=4, help="local AdamW's H, and QSR's base H")
ap.add_argument("--lr", type=float, default=3e-3)
ap.add_argument("--context", type=int, default=64)
ap.add_argument("--batch-size", type=int, default=16)
args = ap.parse_args()
if min(args.steps, args.period, args.context, args.batch_size) < 1:
    ap.error("--steps, --period, --context and --batch-size must be at least 1")


def windows(data, n, generator):
    starts = torch.randint(0, len(data) - args.context - 1, (n,), generator=generator)
    chunk = torch.stack([data[s:s + args.context + 1] for s in starts.tolist()]).long()
    return chunk[:, :-1], chunk[:, 1:]


world = dsgd.start()
train, val = load_fortunes()
torch.manual_seed(0)
model = GPT(args.context)
algorithm = {"csgd": dsgd.algorithms.csgd(), "local": dsgd.algorithms.local_sgd(args.period),
             "qsr": dsgd.algorithms.qsr(args.period, alpha=0.01)}[args.algorithm]
opt = dsgd.DecentralizedOptimizer(torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1), model,
                                  algorithm, world)
schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)  # QSR's rounds lengthen as it decays
mine = torch.Generator().manual_seed(1000 + world.rank)  # each worker its own windows of the training text
for step in range(args.steps):
    x, y = windows(train, args.batch_size, mine)
    opt.zero_grad()
    F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    opt.step()
    schedule.step()
with opt.averaged(), torch.no_grad():
    x, y = windows(val, 64, torch.Generator().manual_seed(7))  # the same held-out windows on every rank
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
if world.rank == 0:
    print(f"{args.algorithm}: {args.steps} steps on {world.n_workers} workers, validation loss {loss:.4f} "
          f"(perplexity {math.exp(loss):.2f}; uniform bytes: {math.log(256):.4f}), "
          f"{opt.stats['bytes_sent']:.0f} bytes sent per worker", flush=True)

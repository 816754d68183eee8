"""Your own loop, elastic: ranks may die, the survivors go on, and a new process takes each lost
rank's place with its neighbour's state (no checkpoint read). A CNN on Fashion-MNIST, D-SGD on a ring
with momentum, one worker per rank.

    mpirun --with-ft ulfm --prtemca state_base_recoverable 1 --prtemca state_base_notify_errors 1 \\
        -np 8 python -m mpi4py examples/elastic_training.py --steps 480 --kill 7@92,4@240 --replace

--kill RANK@STEP,... makes those ranks (numbered as mpirun started them) kill themselves with
SIGKILL as that step starts. Whenever the number of workers changes, the training set is split again
over the workers there are, from that step on (as `python -m dsgd.train --lost-data reassign`).
Rank 0 prints one JSON line at the end: the average model's test accuracy at each evaluation and
the changes of membership.
"""
import argparse
import json
import os
import signal
import time

import torch
from mpi4py import MPI

import dsgd
from dsgd.data import load_dataset
from dsgd.data.batches import local_batch
from dsgd.data.rng import derive_seed
from dsgd.data.samplers import make_sampler
from dsgd.elastic.join import leave
from dsgd.models import build_model_for

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=480)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--lr", type=float, default=0.05)
ap.add_argument("--eval-every", type=int, default=60)
ap.add_argument("--eval-samples", type=int, default=2000)
ap.add_argument("--kill", default="", help="RANK@STEP,...: that rank (as mpirun started it) dies as STEP starts")
ap.add_argument("--replace", action="store_true", help="start a new process for each lost rank")
ap.add_argument("--json", help="also write rank 0's result line to this file")
args = ap.parse_args()
if args.steps < 1 or args.eval_every < 1:
    ap.error("--steps and --eval-every must be at least 1")
try:
    kills = {(int(r), int(s)) for r, s in (k.split("@") for k in args.kill.split(",") if k)}
except ValueError:
    ap.error(f"--kill must be RANK@STEP pairs separated by commas, e.g. 7@92,4@240; got {args.kill!r}")

try:
    world = dsgd.start("mpi", elastic=True, replace=args.replace)
except RuntimeError as e:  # an MPI started without fault tolerance: the command line above says how
    if MPI.COMM_WORLD.rank == 0:  # once for the job
        ap.error(str(e))
    raise SystemExit(2)
launched_rank = None if world.joined else MPI.COMM_WORLD.rank   # a replacement is never on the kill list
train, test = load_dataset("fashion-mnist", train=True), load_dataset("fashion-mnist", train=False)
torch.manual_seed(args.seed)
model = build_model_for("cnn", train, norm="none")
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
opt = dsgd.DecentralizedOptimizer(optimizer, model, dsgd.algorithms.dsgd("ring"), world)


def sampler_for(n: int, since: int):
    """The data split over N workers from step SINCE on: each worker's batch at step t is the sampler's
    at t - SINCE (one pass over the data per epoch of n x 32 samples a step)."""
    seed = args.seed if since == 0 else derive_seed(args.seed, "elastic", since)
    return make_sampler(False, len(train), n, 32, seed), since


def accuracy() -> float:
    x, y = test.take(torch.arange(args.eval_samples), "cpu")
    with opt.averaged(), torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


step, t0, curve = opt.steps, time.time(), []     # a replacement starts at the job's step
n, (sampler, since) = world.n_workers, sampler_for(world.n_workers, 0 if step == 0 else step)
while step < args.steps:
    if world.n_workers != n:                      # workers lost or joined at the last step: split again
        n, (sampler, since) = world.n_workers, sampler_for(world.n_workers, step)
    if (launched_rank, step) in kills:
        os.kill(os.getpid(), signal.SIGKILL)
    x, y = local_batch(train, sampler, world.first_worker, step - since, args.seed)
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    step += 1
    if step % args.eval_every == 0 or step == args.steps:
        curve.append([step, accuracy(), world.n_workers])
if world.rank == 0:
    changes = [{"kind": type(c).__name__, "step": c.step, "workers_after": c.workers_after,
                "seconds": round(c.seconds, 3)} for c in opt.membership]
    line = json.dumps({"final_step": step, "test_acc": curve[-1][1], "curve": curve, "changes": changes,
                       "wall_s": time.time() - t0})
    print(line, flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            f.write(line + "\n")
if opt.membership:
    leave(0)   # after a failure MPI_Finalize may wait forever (docs/elastic.md)

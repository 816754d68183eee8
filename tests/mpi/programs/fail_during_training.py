"""One rank fails mid-training; the job must end promptly, with one message, however it was started.

    mpirun -np 3 python fail_during_training.py --mode nan --out /tmp/run     # no `-m mpi4py`

--mode nan:   rank 2's loss is NaN at step 3 only on that rank; all ranks must stop together.
--mode raise: rank 1 raises an unexpected error at step 2; the job must abort, not hang.
"""
import argparse
import os
import sys

from dsgd.train import cli
from dsgd.train.workers import WorkerSet

ap = argparse.ArgumentParser()
ap.add_argument("--mode", choices=["nan", "raise"], required=True)
ap.add_argument("--out", required=True)
args = ap.parse_args()
rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
calls = {"n": 0}
real = WorkerSet.compute_grads


def faulty(self, batch_of, physical_batch=0):
    loss_sum, correct, seen = real(self, batch_of, physical_batch)
    step, calls["n"] = calls["n"], calls["n"] + 1
    if args.mode == "nan" and rank == 2 and step == 3:
        return float("nan"), correct, seen
    if args.mode == "raise" and rank == 1 and step == 2:
        raise RuntimeError("deliberate failure inside training on rank 1")
    return loss_sum, correct, seen


WorkerSet.compute_grads = faulty
sys.exit(cli.main(["--algorithm", "dsgd", "--topology", "ring", "--model", "mlp", "--steps-per-epoch", "20",
                   "--eval-every", "20", "--batch-size", "16", "--out", args.out]))

"""kill -9 during elastic training with replacements: a new process takes each lost rank's place.

    mpirun --with-ft ulfm --prtemca state_base_recoverable 1 --prtemca state_base_notify_errors 1 \\
        -np 4 python -m mpi4py elastic_join.py --kill r2@5,j1@9 --stamp /tmp/join

One rule (--rule, D-SGD with momentum by default) trains in an elastic world started with
replace=True on a least-squares problem; for each WHO@STEP of --kill the process WHO kills itself
(SIGKILL) at the start of STEP: rR is the rank R mpirun started, jG the G-th replacement. After each
loss the survivors start this script again (MPI_Comm_spawn); the new process joins with the last
survivor's state and trains from the job's step. Every process still alive at the end checks its
membership records and its workers' parameters against elastic_join_reference.py (the same changes
made by hand in one process).
"""
import argparse
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).resolve().parent))
import elastic_join_reference as ref  # noqa: E402
import dsgd  # noqa: E402
from dsgd.elastic import MembershipChange, MembershipJoin  # noqa: E402
from elastic_join_reference import LeastSquares, lsq  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--workers-per-rank", type=int, default=2)
ap.add_argument("--rule", default="dsgd", choices=sorted(ref.cases()))
ap.add_argument("--ranks", type=int, default=4, help="the ranks mpirun starts (the job's first size)")
ap.add_argument("--kill", default="r2@5,j1@9", help="WHO@STEP,...: rR (a rank mpirun started) or jG "
                                                     "(the G-th replacement) kills itself at STEP")
ap.add_argument("--stamp", required=True, help="a dying process writes the time of its kill to STAMP.WHO")
args = ap.parse_args()
K, size = args.workers_per_rank, args.ranks
kills = sorted(((who, int(s)) for who, s in (item.split("@") for item in args.kill.split(","))), key=lambda k: k[1])
n = size * K
problem = lsq.Problem(n, seed=3)
make, momentum, spec = ref.cases()[args.rule]

t0 = time.time()
world = dsgd.start("mpi", workers_per_rank=K, elastic=True, replace=True)
models = [LeastSquares(problem, world.first_worker + k) for k in range(K)]
opt = ref.wrap(world, models, momentum, make(spec))
joins = sum(isinstance(c, MembershipJoin) for c in opt.membership)
me = f"j{joins}" if world.joined else f"r{MPI.COMM_WORLD.rank}"
if world.joined:
    print(f"{me}: joined as rank {world.rank} of {world.size} at step {opt.steps}, "
          f"{time.time() - t0:.2f}s after its start", flush=True)


def kill(t: int) -> None:
    if (me, t) in kills:
        Path(f"{args.stamp}.{me}").write_text(repr(time.time()))
        os.kill(os.getpid(), signal.SIGKILL)


ref.train(opt, models, opt.steps, ref.STEPS, before_step=kill)


def expected():
    """The records every process must end with, and the reference's changes."""
    alive, records, changes, joined = [f"r{r}" for r in range(size)], [], [], 0
    for who, step in kills:
        r = alive.index(who)
        lost = tuple(range(r * K, (r + 1) * K))
        alive.remove(who)
        records.append(("lost", step, (r,), lost, len(alive) * K))
        changes.append(("lost", step, lost))
        joined += 1
        source = len(alive) - 1
        alive.append(f"j{joined}")
        new = len(alive) - 1
        records.append(("joined", step + 1, (new,), tuple(range(new * K, (new + 1) * K)), len(alive) * K, source))
        changes.append(("joined", step + 1, tuple(range(source * K, (source + 1) * K))))
    return records, changes, alive


records, changes, alive = expected()
got = [("lost", c.step, c.lost_ranks, c.lost_workers, c.workers_after) if isinstance(c, MembershipChange) else
       ("joined", c.step, c.joined_ranks, c.joined_workers, c.workers_after, c.source_rank) for c in opt.membership]
problems = []
if got != records:
    problems.append(f"{me}: membership {got}, expected {records}")
if alive[world.rank] != me:
    problems.append(f"{me}: rank {world.rank}, expected {alive.index(me) if me in alive else None}")
reference = ref.reference(args.rule, n, changes)
mine = world.first_worker
gap = float(np.abs(np.stack([m.x() for m in models]) - reference[mine:mine + K]).max())
if gap > 0:
    problems.append(f"{me}: max |x - reference| = {gap:.3g} on rank {world.rank}")
comm = world.comm.comm
every = [p for ps in comm.allgather(problems) for p in ps]
if world.rank == 0:
    for c in opt.membership:
        print(c.line(), flush=True)
    if every:
        print("elastic join FAILED:\n" + "\n".join(every), flush=True)
    else:
        print(f"elastic join ok: {args.rule}, {len(kills)} kill(s), {len(kills)} replacement(s), "
              f"{world.size} ranks at the end ({' '.join(alive)}), parameters bit for bit the reference's", flush=True)
# a job that replacements joined must not call MPI_Finalize (dsgd.elastic.leave)
dsgd.elastic.leave(1 if every else 0)

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
                                                     "(the G-th replacement) kills itself at STEP; jG@join: as "
                                                     "soon as its dsgd.start returns, in the middle of its join")
ap.add_argument("--stamp", required=True, help="a dying process writes the time of its kill to STAMP.WHO")
args = ap.parse_args()
K, size = args.workers_per_rank, args.ranks
pairs = [item.split("@") for item in args.kill.split(",")]
kills = sorted(((who, int(s)) for who, s in pairs if s != "join"), key=lambda k: k[1])
at_join = {who for who, s in pairs if s == "join"}
n = size * K
problem = lsq.Problem(n, seed=3)
make, momentum, spec = ref.cases()[args.rule]



def claim(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


t0 = time.time()
world = dsgd.start("mpi", workers_per_rank=K, elastic=True, replace=True)
if world.joined:   # the G-th replacement started in the job (those started together claim in rank order)
    for turn in range(MPI.COMM_WORLD.size):   # in a replacement, COMM_WORLD is the processes spawned with it
        if turn == MPI.COMM_WORLD.rank:
            me = next(f"j{g}" for g in range(1, 1000) if claim(f"{args.stamp}.started.j{g}"))
        MPI.COMM_WORLD.Barrier()
    if me in at_join:
        Path(f"{args.stamp}.{me}").write_text(repr(time.time()))
        os.kill(os.getpid(), signal.SIGKILL)
else:
    me = f"r{MPI.COMM_WORLD.rank}"
models = [LeastSquares(problem, world.first_worker + k) for k in range(K)]
opt = ref.wrap(world, models, momentum, make(spec))
if world.joined:
    print(f"{me}: joined as rank {world.rank} of {world.size} at step {opt.steps}, "
          f"{time.time() - t0:.2f}s after its start", flush=True)


def kill(t: int) -> None:
    if (me, t) in kills:
        Path(f"{args.stamp}.{me}").write_text(repr(time.time()))
        os.kill(os.getpid(), signal.SIGKILL)


ref.train(opt, models, opt.steps, ref.STEPS, before_step=kill)


def expected():
    """The records every process must end with and the reference's changes. Kills at the same step
    are one loss of those ranks (the canonical form of `merged`) and one join of as many processes."""
    alive, records, changes, joined = [f"r{r}" for r in range(size)], [], [], 0
    for step in sorted({s for _, s in kills}):
        gone = [alive.index(who) for who, s in kills if s == step]
        lost = tuple(w for r in sorted(gone) for w in range(r * K, (r + 1) * K))
        alive = [a for i, a in enumerate(alive) if i not in gone]
        records.append(("lost", step, tuple(sorted(gone)), lost, len(alive) * K))
        changes.append(("lost", step, lost))
        source, first, at = len(alive) - 1, len(alive), step + 1
        while f"j{joined + 1}" in at_join:   # that replacement dies in its join: lost at the next step, tried again
            joined += 1
            records.append(("lost", at, (first,), tuple(range(first * K, (first + 1) * K)), len(alive) * K))
            at += 1
        for _ in gone:
            joined += 1
            alive.append(f"j{joined}")
        new = tuple(range(first, len(alive)))
        records.append(("joined", at, new, tuple(w for r in new for w in range(r * K, (r + 1) * K)),
                        len(alive) * K, source))
        changes.append(("joined", at, tuple(w for _ in gone for w in range(source * K, (source + 1) * K))))
    return records, changes, alive


def merged(records):
    """RECORDS with the losses noticed one after the other at one step made one loss, numbered as
    before the first (ranks lost at the same moment may show either way)."""
    out = []
    for rec in records:
        last = out[-1] if out else None
        if rec[0] == "lost" and last is not None and last[0] == "lost" and last[1] == rec[1]:
            before = last[4] // K + len(last[2])   # ranks before the first loss
            alive = [r for r in range(before) if r not in last[2]]
            ranks = tuple(sorted((*last[2], *(alive[r] for r in rec[2]))))
            out[-1] = ("lost", rec[1], ranks, tuple(w for r in ranks for w in range(r * K, (r + 1) * K)), rec[4])
        else:
            out.append(rec)
    return out


records, changes, alive = expected()
got = merged([("lost", c.step, c.lost_ranks, c.lost_workers, c.workers_after) if isinstance(c, MembershipChange) else
              ("joined", c.step, c.joined_ranks, c.joined_workers, c.workers_after, c.source_rank)
              for c in opt.membership])
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

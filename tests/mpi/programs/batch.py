"""Several MPI programs, one after another, in the ranks of one job: the ranks import torch and start
MPI once for all of them instead of once per program. A test file lists its programs by key
(mpi_harness.Batch); each program runs here as `mpirun -np N python -m mpi4py PROGRAM ARGS` would run
it, as `__main__`, with its own sys.argv, and with each rank's stdout and stderr in a file of its own.

    mpirun -np 8 python -m mpi4py batch.py SPEC.json

SPEC.json: {"dir": OUTDIR, "programs": [[N, [ARGV...]], ...]}; an ARGV starting with "-m" runs a module.
A program of N ranks runs on the job's first N ranks, in a world of its own: for its duration
MPI.COMM_WORLD is a communicator of exactly those ranks (split from the job's), and the launcher's
variables (OMPI_COMM_WORLD_SIZE...) say N, so the program, dsgd included, sees the job `mpirun -np N`
would give it. The other ranks sleep until it ends (a polled non-blocking barrier, no busy wait).
A program that raises or exits non-zero ends the whole job (its ranks may be inside a collective)."""
import contextlib
import json
import os
import runpy
import sys
import time
import traceback
from pathlib import Path

from mpi4py import MPI

JOB = MPI.COMM_WORLD
SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_UNIVERSE_SIZE")


def run_one(argv: list) -> int:
    sys.argv = list(argv[1:]) if argv[0] == "-m" else list(argv)
    try:
        if argv[0] == "-m":
            sys.argv[0] = argv[1]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.path.insert(0, str(Path(argv[0]).resolve().parent))
            try:
                runpy.run_path(argv[0], run_name="__main__")
            finally:
                sys.path.pop(0)
    except SystemExit as e:
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    return 0


@contextlib.contextmanager
def world_of(comm):
    """MPI.COMM_WORLD and the launcher's size variables say COMM while the block runs."""
    saved = {name: os.environ.get(name) for name in SIZE_VARIABLES}
    MPI.COMM_WORLD = comm
    for name in SIZE_VARIABLES:
        if name in os.environ:
            os.environ[name] = str(comm.size)
    try:
        yield
    finally:
        MPI.COMM_WORLD = JOB
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value


def leave_process_group() -> None:
    """End this rank's torch.distributed group, made for another world than the next program's (a
    program joins the default group, and keeps the one it finds)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wait_for_everyone() -> None:
    """A barrier over the job that sleeps instead of spinning, so idle ranks leave the cores free."""
    request = JOB.Ibarrier()
    while not request.Test():
        time.sleep(0.002)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out, rank = Path(spec["dir"]), JOB.rank
    worlds = {}
    for n in sorted({n for n, _ in spec["programs"]}):  # every rank takes part in every split, in order
        worlds[n] = JOB if n == JOB.size else JOB.Split(0 if rank < n else MPI.UNDEFINED, rank)
    group_world = None  # the world this rank's torch.distributed group (if any) was made in
    for i, (n, argv) in enumerate(spec["programs"]):
        if group_world != (n if rank < n else None):
            leave_process_group()
            group_world = None
        wait_for_everyone()
        if rank >= n:
            continue
        group_world = n
        with open(out / f"{i}.rank{rank}.txt", "w") as log:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), world_of(worlds[n]):
                try:
                    status = run_one(argv)
                except BaseException:
                    traceback.print_exc()
                    status = 1
        if status != 0:
            print(f"batch: program {i} ({' '.join(argv)}) ended with status {status} on rank {rank}:\n"
                  f"{(out / f'{i}.rank{rank}.txt').read_text()[-4000:]}", file=sys.stderr, flush=True)
            JOB.Abort(1)
        (out / f"{i}.rank{rank}.done").write_text(str(status))
    leave_process_group()
    wait_for_everyone()
    for comm in worlds.values():
        if comm != JOB and comm != MPI.COMM_NULL:
            comm.Free()


if __name__ == "__main__":
    main()

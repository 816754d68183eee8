"""Several MPI programs, one after another, in the ranks of one job: the ranks import torch and start
MPI once for all of them instead of once per program. A test file lists its programs by key
(mpi_harness.Batch); each program runs here as `python -m mpi4py PROGRAM ARGS` would run it, as
`__main__`, with its own sys.argv, and with each rank's stdout and stderr in a file of its own.

    mpirun -np 4 python -m mpi4py batch.py SPEC.json

SPEC.json: {"dir": OUTDIR, "programs": [[ARGV...], ...]}; an ARGV starting with "-m" runs a module.
A program that raises or exits non-zero ends the whole job (its ranks may be inside a collective)."""
import contextlib
import json
import runpy
import sys
import traceback
from pathlib import Path

from mpi4py import MPI


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


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out, comm = Path(spec["dir"]), MPI.COMM_WORLD
    for i, argv in enumerate(spec["programs"]):
        comm.Barrier()
        with open(out / f"{i}.rank{comm.rank}.txt", "w") as log:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                try:
                    status = run_one(argv)
                except BaseException:
                    traceback.print_exc()
                    status = 1
        if status != 0:
            print(f"batch: program {i} ({' '.join(argv)}) ended with status {status} on rank {comm.rank}:\n"
                  f"{(out / f'{i}.rank{comm.rank}.txt').read_text()[-4000:]}", file=sys.stderr, flush=True)
            comm.Abort(1)
        (out / f"{i}.rank{comm.rank}.done").write_text(str(status))
    comm.Barrier()


if __name__ == "__main__":
    main()

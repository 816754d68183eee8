"""`python -m dsgd.train`: parse settings, check them, start the communicator, run the loop.

    mpirun -np 4 python -m mpi4py -m dsgd.train --algorithm dsgd --topology ring --epochs 1

Bad settings end every rank with one line on stderr and status 2, before any training step.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from dsgd.config import ConfigError, parse
from dsgd.data.errors import DatasetError
from dsgd.comm.mpi import CommTimeout
from dsgd.train.checkpoint import CheckpointError
from dsgd.train.loop import NonFiniteError

USAGE_ERROR = 2
RUN_ERROR = 3


def last_checkpoint(out: Path) -> str:
    try:
        from dsgd.train.checkpoint import find
        _, ckpt_dir, _ = find(str(out))
        return f"the last good checkpoint is {ckpt_dir} (resume with --resume {out})"
    except CheckpointError:
        return "no checkpoint was written"


def _world_size_from_env() -> tuple[int, int]:
    import os
    for r, s in (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"),
                 ("PMIX_RANK", "OMPI_COMM_WORLD_SIZE"), ("RANK", "WORLD_SIZE")):
        if os.environ.get(r, "").isdigit() and os.environ.get(s, "").isdigit():
            return int(os.environ[r]), int(os.environ[s])
    return 0, 1


def fail(rank: int, message: str) -> int:
    """Settings errors are the same on every rank: rank 0 says it once."""
    if rank == 0:
        print(f"dsgd.train: error: {message}", file=sys.stderr, flush=True)
    else:
        time.sleep(0.5)  # let rank 0 print before an exiting rank brings the job down
    return USAGE_ERROR


def agree_on_errors(comm, error: str | None) -> str | None:
    """Setup errors may hit some ranks only (a missing checkpoint file): all ranks learn them."""
    errors = comm.allgather_object(error)
    distinct = list(dict.fromkeys(e for e in errors if e))
    if not distinct:
        return None
    if len(distinct) == 1 and errors.count(distinct[0]) == len(errors):
        return distinct[0]
    return "; ".join(f"rank {errors.index(e)}: {e}" for e in distinct)


def main(argv: list[str] | None = None) -> int:
    rank, size = _world_size_from_env()
    try:
        cfg, ns = parse(argv)
        from dsgd.train import build
        build.check(cfg, size)
    except ConfigError as e:
        return fail(rank, str(e))
    import os
    if cfg.run.comm_timeout > 0:
        os.environ["DSGD_COMM_TIMEOUT"] = str(cfg.run.comm_timeout)
    from dsgd.comm import Mixer, make_communicator
    comm = make_communicator(cfg.run.backend)
    mixer = Mixer(comm, cfg.run.workers_per_rank)
    out = Path(cfg.run.out)
    error, run = None, None
    try:
        out.mkdir(parents=True, exist_ok=True)
        from dsgd.train.loop import Run
        run = Run(cfg, mixer, out)
        if ns.resume:
            run.restore(ns.resume)
    except (ConfigError, DatasetError, CheckpointError, OSError) as e:
        error = str(e)
    error = agree_on_errors(comm, error)
    if error:
        return fail(comm.rank, error)
    try:
        row = run.run()
    except (NonFiniteError, CommTimeout) as e:
        latest = last_checkpoint(out)
        print(f"dsgd.train: error: {e}; {latest}", file=sys.stderr, flush=True)
        run.log.rank_only(f"stopped: {e}")
        return RUN_ERROR
    run.log.close()
    if comm.rank == 0 and row:
        print(f"final test accuracy {row['test_acc']:.4f} after {row['step']} steps; results in {out}/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dispatch `python -m dsgd.bench SUBCOMMAND [ARGS]` to the module that owns the subcommand.

    mpirun -np 4 --oversubscribe python -m dsgd.bench mix --json
    python -m dsgd.bench mix --help

To add a subcommand, add a module with `main(argv: list[str]) -> int` and one entry below.
"""
from __future__ import annotations

import importlib
import sys
import traceback

# subcommand -> (module, one-line summary). Modules are imported only when chosen, so
# `--help` does not start MPI or import torch.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "mix": ("dsgd.bench.mix", "one mixing step (Mixer.mix_) against raw mpi4py moving the same bytes"),
    "workers": ("dsgd.bench.workers", "K workers in one process: serial against vectorized training throughput"),
    "overhead": ("dsgd.bench.overhead", "one worker's training step against a plain PyTorch loop"),
    "peers": ("dsgd.bench.peers", "local SGD and C-SGD against PyTorch's model averager and DDP"),
    "compress": ("dsgd.bench.compress", "compressed mixing per codec against the dense step: time, bytes on the wire"),
    "agree": ("dsgd.bench.agree", "the per-step agreement (one-float allreduce) against the same step without it"),
    "hand": ("dsgd.bench.hand", "the mixing step against the same step hand-written with mpi4py and numpy"),
    "seam": ("dsgd.bench.seam", "the mixing machinery per step at 64 to 4,096 workers: planning and mixing against numpy"),
    "scaling": ("dsgd.bench.scaling", "weak scaling of short trainings on 1, 2, 4, 8 ranks (a driver, not under mpirun)"),
    "cost": ("dsgd.bench.cost", "predicted step times on a described network (alpha-beta model), fitted here"),
    "library": ("dsgd.bench.library", "the library's optimizer wrapper against bare torch.optim, and local SGD "
                "against PyTorch's PostLocalSGDOptimizer"),
    "elastic": ("dsgd.bench.elastic", "an elastic step (state copy and agreement, under mpirun --with-ft ulfm) "
                "against the plain step"),
    "outer": ("dsgd.bench.outer", "DiLoCo's step with its outer step against a plain local step, and streaming "
              "DiLoCo's peak bytes per step against DiLoCo's"),
    "startup": ("dsgd.bench.startup", "seconds before training starts: --help and a one-step job, beside another checkout"),
}


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    return ("usage: python -m dsgd.bench SUBCOMMAND [ARGS]   (under mpirun for multi-rank runs)\n\n"
            "subcommands:\n" + "\n".join(lines) + "\n\n`python -m dsgd.bench SUBCOMMAND --help` for its options")


def _abort_job() -> None:
    """After an error on this rank, end every rank: the others would wait forever in a collective."""
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized() and MPI.COMM_WORLD.Get_size() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"dsgd.bench: unknown subcommand {name!r}\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    from topologies import TopologyError
    try:
        return module.main(rest)
    except TopologyError as e:  # a graph that does not exist on this many ranks: the user's to fix
        MPI = sys.modules.get("mpi4py.MPI")
        ranks = MPI.COMM_WORLD.Get_size() if MPI is not None and MPI.Is_initialized() else 1
        if ranks == 1 or MPI.COMM_WORLD.Get_rank() == 0:
            hint = "; start it under mpirun -np N with more ranks" if ranks == 1 else ""
            print(f"python -m dsgd.bench {name}: error: --topology on {ranks} rank(s): {e}{hint}", file=sys.stderr,
                  flush=True)
        return 2
    except Exception:
        traceback.print_exc()
        _abort_job()
        raise


if __name__ == "__main__":
    sys.exit(main())

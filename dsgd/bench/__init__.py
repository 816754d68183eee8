"""Benchmarks of dsgd's building blocks, run as `python -m dsgd.bench SUBCOMMAND`.

    mpirun -np 4 --oversubscribe python -m dsgd.bench mix --json

Each subcommand is a module here with `main(argv) -> int`; `__main__.SUBCOMMANDS` lists them.
Only rank 0 prints; `--json` makes that one JSON object.
"""

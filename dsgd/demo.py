"""The demo: a short decentralized training run per topology on Fashion-MNIST, one table at the end.

    python -m dsgd.demo [--ranks 4] [--steps 150] [--out runs/demo]

Each configuration is a real `mpirun -np RANKS ... python -m mpi4py -m dsgd.train` job on this
machine, built by dsgd.launcher; the line printed before each job is exactly the one it runs
(oversubscription and all), so it can be pasted into a shell from the same directory.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

from dsgd import launcher

CONFIGS = {
    "csgd (allreduce every step)": ["--algorithm", "csgd"],
    "local SGD, H=8": ["--algorithm", "local", "--local-steps", "8"],
    "dsgd ring": ["--algorithm", "dsgd", "--topology", "ring"],
    "dsgd exponential": ["--algorithm", "dsgd", "--topology", "exponential"],
    "dsgd one-peer-exponential": ["--algorithm", "dsgd", "--topology", "one-peer-exponential"],
}



def pasteable(line: list) -> list:
    """The line with mpirun as the absolute path it resolves to here (the venv's, under `make demo`),
    so that pasted into a new shell, where the venv is not on PATH, it runs the same programs."""
    return [shutil.which(line[0]) or line[0], *line[1:]]

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dsgd.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--steps", type=int, default=150, help="training steps per configuration")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default="runs/demo")
    args = ap.parse_args(argv)
    for flag, value in (("--ranks", args.ranks), ("--steps", args.steps), ("--batch-size", args.batch_size)):
        if value < 1:
            ap.error(f"{flag} must be at least 1, got {value}")
    out = Path(args.out).resolve()
    rows = []
    print(f"demo: one run directory per configuration under {out}/; a demo run there before is replaced "
          f"(--overwrite true)", flush=True)
    for name, flags in CONFIGS.items():
        run_dir = out / name.split(" (")[0].replace(" ", "-").replace(",", "").replace("=", "")
        cmd = ["-m", "dsgd.train", *flags, "--dataset", "fashion-mnist", "--model", "cnn", "--norm", "none",
               "--batch-size", str(args.batch_size), "--lr", "0.05", "--momentum", "0.9",
               "--steps-per-epoch", str(args.steps), "--epochs", "1", "--eval-every", str(args.steps),
               "--log-every", str(max(1, args.steps // 3)), "--out", str(run_dir), "--overwrite", "true"]
        line = pasteable(launcher.mpirun_command(args.ranks, cmd))
        print(f"== {name}: {shlex.join(line)}", flush=True)
        t0 = time.time()
        res = launcher.execute(line, capture=False, timeout=1800)
        if res.returncode != 0:
            print(f"demo: {name} failed with status {res.returncode}", file=sys.stderr)
            return res.returncode
        last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        rows.append((name, last, time.time() - t0))
    print(f"\nFashion-MNIST, {args.ranks} workers, {args.steps} steps of local batch {args.batch_size}:")
    print(f"{'configuration':32} {'test acc':>8} {'consensus':>10} {'MB sent/worker':>15} {'wall s':>7}")
    for name, m, wall in rows:
        print(f"{name:32} {m['test_acc']:8.4f} {m['consensus_distance']:10.3g} {m['bytes_sent'] / 1e6:15.1f} "
              f"{wall:7.1f}")
    print(f"\nresults (metrics.jsonl, config.yaml, tensorboard/, logs/) in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every shell command the docs show runs as written, shortened, or is skipped for a stated reason.

The commands are the lines of ```bash / ```sh / ```shell blocks (and the `$ ` lines of ```console
blocks) in README.md, docs/*.md and experiments/README.md, with `\\` continuations joined and
`#` comments dropped. COMMANDS says, for each one, how it is run here; a command missing from it
fails the test (so a new doc command has to be classified), and so does an entry no doc shows any
more, or an untagged block that starts like a command (tag it bash, or text for a synopsis).
Reports under docs/*/ record commands that ran once and are not read.

Commands run from the repository root with the venv first on PATH, as the docs say; as root with
OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1, as the docs tell root to set.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "experiments" / "README.md"]
SHELL_TAGS = {"bash", "sh", "shell", "console"}
LOOKS_LIKE_A_COMMAND = re.compile(r"(\$ |python3? |mpirun |make |launch/|docker |sbatch |srun |\.venv/|pip |"
                                  r"bash |export |[A-Z_]+=\S* )")
SLURM_SCRIPT = REPO / "launch" / "slurm.sbatch"
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# -- what the docs show ----------------------------------------------------------------------
def fenced_blocks(path: Path):
    """(tag, first line number, lines) of each fenced block."""
    tag, lines, start = None, [], 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = re.match(r"\s*```(\S*)", line)
        if fence and tag is None:
            tag, lines, start = fence.group(1), [], number
        elif fence:
            yield tag, start, lines
            tag = None
        elif tag is not None:
            lines.append(line)


def block_commands(tag: str, lines: list) -> list:
    text = "\n".join(lines).replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        if tag == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        words = shlex.split(line, comments=True)
        if words:
            commands.append(" ".join(words))
    return commands


def doc_commands() -> dict:
    """command -> the places (file:line of its block) that show it."""
    found: dict = {}
    for path in DOCS:
        for tag, start, lines in fenced_blocks(path):
            if tag in SHELL_TAGS:
                for command in block_commands(tag, lines):
                    found.setdefault(command, []).append(f"{path.relative_to(REPO)}:{start}")
    return found


# -- how each command is run here --------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """Runs as written, with EXTRA appended (flags that shorten it, a temporary --out); {tmp} is a
    fresh directory. PREPARE(tmp) runs first, CHECK(tmp, output) after a zero exit status."""
    name: str
    extra: str = ""
    env: Optional[dict] = None
    prepare: Optional[Callable] = None
    check: Optional[Callable] = None


@dataclass(frozen=True)
class DryRunOf:
    """A raw mpirun line that is `launch/dsgd-mpirun --dry-run` of another doc command (which runs)
    on a machine of CORES cores."""
    wrapper_command: str
    cores: int


@dataclass(frozen=True)
class Covered:
    """Run by another test of the suite, which holds MARKER (the same script, in its quick mode)."""
    test: str
    marker: str


@dataclass(frozen=True)
class Skip:
    """Cannot run here, for REASON; with RANKS, its trainer settings are still checked for that
    many ranks (the recipe loads, the worker count matches, the flags exist and are valid)."""
    reason: str
    ranks: Optional[int] = None


SHORT = "--epochs 1 --steps-per-epoch 2 --eval-every 2 --eval-samples 100 --out {tmp}/run"
CLUSTER = "needs the two-node cluster of the hostfile shown above it, and CIFAR-10"
BENCH_TEST = "tests/mpi/test_bench_more.py"


def trained(tmp: Path, output: str) -> None:
    rows = [json.loads(line) for line in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["step"] >= 2 and 0 <= rows[-1]["test_acc"] <= 1, rows
    assert "final test accuracy" in output


def copy_compression_reports(tmp: Path) -> None:
    for report in (REPO / "docs" / "compression").glob("*.json"):
        shutil.copy(report, tmp / report.name)


def same_compression_report(tmp: Path, output: str) -> None:
    assert (tmp / "README.md").read_text() == (REPO / "docs" / "compression" / "README.md").read_text(), \
        "docs/compression/README.md is not what the report writer makes of the committed JSON"


DEMO_STAND_IN = """#!{python}
# mpirun for the demo: the first job is run by the real mpirun, the others only recorded.
import json, os, pathlib, sys
log = pathlib.Path({log!r})
first = not log.exists()
with log.open("a") as f:
    f.write(json.dumps(sys.argv) + "\\n")
if first:
    os.execvp("mpirun", ["mpirun", *sys.argv[1:]])
out = pathlib.Path(sys.argv[sys.argv.index("--out") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.jsonl").write_text(json.dumps({{"test_acc": 0.5, "consensus_distance": 0.0, "bytes_sent": 1.0}}))
"""


def demo_stand_in(tmp: Path) -> None:
    (tmp / "mpirun").write_text(DEMO_STAND_IN.format(python=sys.executable, log=str(tmp / "argv.jsonl")))
    (tmp / "mpirun").chmod(0o755)


def demo_printed_what_ran(tmp: Path, output: str) -> None:
    printed = [shlex.split(line.split(": ", 1)[1]) for line in output.splitlines() if line.startswith("== ")]
    ran = [json.loads(line) for line in (tmp / "argv.jsonl").read_text().splitlines()]
    assert len(printed) == 5 and printed == ran, (printed, ran)
    first = json.loads((tmp / "demo" / "csgd" / "metrics.jsonl").read_text().splitlines()[-1])
    assert first["step"] == 2, first  # the job the real mpirun ran
    assert "Fashion-MNIST, 2 workers, 2 steps" in output


def cost_calibrated(tmp: Path, output: str) -> None:
    report = json.loads(output[output.index("{"):])
    assert {p["numel"] for p in report["points"]} == {16384, 65536}, report["points"]
    assert (tmp / "mix.json").exists()
    # two small sizes on a shared machine: a fit is a bandwidth > 0, or (when load hid the transfer time)
    # no bandwidth and the reason, never a negative one (tests/unit/test_cost_model.py has both on recordings)
    for kind in ("sparse", "average"):
        for side in ("dsgd_s", "raw_s"):
            f = report["fits"][kind][side]
            if f["beta_bytes_per_s"] is None:
                assert f["unfit"].startswith("the times did not grow with the bytes"), f
            else:
                assert f["beta_bytes_per_s"] > 0 and "unfit" not in f, f


def cost_papers(tmp: Path, output: str) -> None:
    rows = json.loads(output)["results"]
    assert rows and all(r["predicted_speedup"] > 0 and r["published_speedup"] > 1 for r in rows), rows


def cost_predicted(tmp: Path, output: str) -> None:
    report = json.loads(output)
    assert report["ranks"] == 32 and report["results"][0]["algorithm"] == "csgd", report["results"][0]
    assert all(r["step_s"] >= report["compute_s"] * (1 - 1e-9) for r in report["results"])  # float sums


COMMANDS = {
    # README.md
    "make demo": Run(
        "make-demo", extra='-o .venv/.installed DEMO_ARGS="--ranks 2 --steps 2 --out {tmp}/demo"',
        env={"DSGD_MPIRUN": "{tmp}/mpirun"}, prepare=demo_stand_in, check=demo_printed_what_ran),
    # (-o: the install is not repeated; DSGD_MPIRUN: a stand-in that records every line and has the real
    # mpirun run the first, so the lines printed are checked against those run, and one of them runs.)
    "make test": Skip("the test suite itself, which this test is part of"),
    "mpirun -np 4 --oversubscribe python -m mpi4py -m dsgd.train --algorithm dsgd --topology exponential "
    "--dataset fashion-mnist --model cnn --batch-size 32 --lr 0.05 --momentum 0.9 --epochs 2 --eval-every 200 "
    "--out runs/exp": Run("readme-train", extra=SHORT, check=trained),
    "mpirun -np 2 python -m dsgd.train --workers-per-rank 2 --dataset fortunes --model gpt --context 64 --optimizer adamw "
    "--lr 0.003 --weight-decay 0.1 --decay cosine --algorithm qsr --local-steps 4 --qsr-alpha 0.01 --batch-size 16 "
    "--steps-per-epoch 300 --eval-every 100 --eval-samples 512 --out runs/lm": Run("readme-lm", extra=SHORT,
                                                                                    check=trained),
    ".venv/bin/python experiments/compare_topologies.py --out runs/compare":
        Covered("tests/experiments/test_experiments.py", '"--quick"'),
    "launch/dsgd-mpirun -np 4 --oversubscribe -- python -m dsgd.train --algorithm dsgd --topology ring "
    "--out runs/ring4": Skip("the same launch as docs/launch.md's one-machine command, which runs; only the "
                             "trainer flags differ", ranks=4),
    "launch/dsgd-mpirun --hostfile hostfile --per-node 4 -- python -m dsgd.train --config "
    "experiments/recipes/postlocal-cifar10-resnet20.yaml --workers-per-rank 4 --data-dir DATA/cifar-10-batches-py":
        Skip("needs CIFAR-10 (and GPUs to finish); the repository's hostfile gives 4 ranks", ranks=4),
    "sbatch launch/slurm.sbatch --workers-per-rank 2 --data-dir DATA/cifar-10-batches-py":
        Skip("needs Slurm (tests/launch/test_slurm_script.py runs the script with stand-ins); 2 nodes x 4", ranks=8),
    "docker compose -f docker/compose.yaml up -d && docker compose -f docker/compose.yaml exec launcher "
    "launch/dsgd-mpirun --hostfile docker/hostfile.compose -- python -m dsgd.train --algorithm dsgd":
        Skip("needs Docker; docker/hostfile.compose has 4 slots", ranks=4),
    # docs/benchmarks.md
    "python -m dsgd.bench workers --json": Covered(BENCH_TEST, '"workers", "--workers"'),
    "python -m dsgd.bench workers --model resnet20 --device cuda --dataset synthetic --json":
        Skip("needs a GPU (--device cuda)"),
    "python -m dsgd.bench overhead --json": Covered(BENCH_TEST, '"overhead", "--repeats"'),
    "python -m dsgd.bench overhead --norm none --json": Covered(BENCH_TEST, '"overhead", "--repeats"'),
    "python -m dsgd.bench overhead --model mlp --norm none --repeats 500 --json":
        Covered(BENCH_TEST, '"overhead", "--repeats"'),
    "launch/dsgd-mpirun -np 4 --oversubscribe -- python -m dsgd.bench peers --repeats 60 --json":
        Covered(BENCH_TEST, '"-m", "dsgd.bench", "peers"'),
    "launch/dsgd-mpirun -np 2 --oversubscribe -- python -m dsgd.bench peers --repeats 60 --json":
        Covered(BENCH_TEST, '"-m", "dsgd.bench", "peers"'),
    "python -m dsgd.bench scaling --json": Covered(BENCH_TEST, '"scaling", "--ranks"'),
    "python -m dsgd.bench seam --json": Covered("tests/mpi/test_bench_scale.py", '"dsgd.bench", "seam"'),
    "mpirun -np 4 --oversubscribe python -m dsgd.bench seam --json":
        Covered("tests/mpi/test_bench_scale.py", '"dsgd.bench", "seam"'),
    **{f"launch/dsgd-mpirun -np {n} --oversubscribe -- python -m dsgd.bench agree --json":
       Covered("tests/mpi/test_bench_agree.py", '"-m", "dsgd.bench", "agree"') for n in (2, 4, 8)},
    # docs/cost-model.md (calibrate shortened: two sizes, two repeats, its mix report into {tmp})
    "python -m dsgd.bench cost calibrate --ranks 4 --numel 16384 65536 262144 1048576 2097152 4194304 "
    "--repeats 10 --save-mix /tmp/costrun/mix.json": Run(
        "cost-calibrate", extra="--numel 16384 65536 --repeats 2 --save-mix {tmp}/mix.json", check=cost_calibrated),
    "python -m dsgd.bench cost papers": Run("cost-papers", check=cost_papers),
    "python -m dsgd.bench cost predict --nodes 4 --ranks-per-node 8 --inter-bandwidth 10 --model resnet50":
        Run("cost-predict", check=cost_predicted),
    "python -m dsgd.bench cost predict --nodes 4 --ranks-per-node 8 --inter-bandwidth 10 --model resnet50 "
    "--straggler-prob 0.05 --straggler-slowdown 4 --steps 256": Run("cost-predict-stragglers", check=cost_predicted),
    # docs/launch.md
    "launch/dsgd-mpirun -np 4 --oversubscribe -- python -m dsgd.train --algorithm dsgd --topology ring --dataset "
    "fashion-mnist --model cnn --epochs 1 --steps-per-epoch 20 --batch-size 32 --lr 0.05 --out runs/ring4":
        Run("launch-one-machine", extra=SHORT, check=trained),
    "mpirun --allow-run-as-root -np 4 --map-by slot:OVERSUBSCRIBE --bind-to none --mca mpi_yield_when_idle 1 --mca btl ^ofi "
    "-x OMP_NUM_THREADS=1 -x MKL_NUM_THREADS=1 -x PATH python -m mpi4py -m dsgd.train --algorithm dsgd "
    "--topology ring --dataset fashion-mnist --model cnn --epochs 1 --steps-per-epoch 20 --batch-size 32 --lr 0.05 "
    "--out runs/ring4": DryRunOf(
        "launch/dsgd-mpirun -np 4 --oversubscribe -- python -m dsgd.train --algorithm dsgd --topology ring "
        "--dataset fashion-mnist --model cnn --epochs 1 --steps-per-epoch 20 --batch-size 32 --lr 0.05 "
        "--out runs/ring4", cores=2),
    "launch/dsgd-mpirun --hostfile hostfile --per-node 4 -- python -m dsgd.train --config "
    "experiments/recipes/postlocal-cifar10-resnet56.yaml --workers-per-rank 4 --data-dir DATA/cifar-10-batches-py "
    "--out runs/c8": Skip(CLUSTER, ranks=8),
    "launch/dsgd-mpirun --hostfile hostfile --per-node 4 --mca btl tcp,self,sm --mca btl_tcp_if_include "
    "10.0.0.0/24 --mca oob_tcp_if_include 10.0.0.0/24 -- python -m dsgd.train --config "
    "experiments/recipes/postlocal-cifar10-resnet56.yaml --workers-per-rank 4 --data-dir DATA/cifar-10-batches-py":
        Skip(CLUSTER + ", on its 10.0.0.0/24 network", ranks=8),
    "PATH=$PWD/.venv/bin:$PATH .venv/bin/python -m pytest tests/launch/test_netns_cluster.py -q -rs":
        Skip("a test file of the suite, which runs it"),
    "DSGD_RECIPE=experiments/recipes/qsr-localadamw.yaml sbatch launch/slurm.sbatch --workers-per-rank 4 "
    "--data-dir DATA/cifar-10-batches-py": Skip("needs Slurm; 2 nodes x 4 ranks", ranks=8),
    "sbatch --nodes=4 launch/slurm.sbatch --data-dir DATA/cifar-10-batches-py --epochs 10":
        Skip("needs Slurm; 4 nodes x 4 ranks", ranks=16),
    "docker build -f docker/Dockerfile.cpu -t dsgd:cpu .": Skip("needs Docker"),
    "docker build -f docker/Dockerfile -t dsgd:gpu .": Skip("needs Docker"),
    "docker run --rm dsgd:cpu launch/dsgd-mpirun -np 2 -- python -m dsgd.train --config "
    "experiments/recipes/qsr-localadamw-fashion-mnist-cpu.yaml": Skip("needs Docker", ranks=2),
    "docker run --rm --gpus all --shm-size 1g dsgd:gpu launch/dsgd-mpirun --per-node 4 -- python -m dsgd.train "
    "--config experiments/recipes/qsr-localadamw-fashion-mnist-cpu.yaml --workers-per-rank 2":
        Skip("needs Docker and GPUs", ranks=4),
    "docker compose -f docker/compose.yaml up -d --build": Skip("needs Docker"),
    "docker compose -f docker/compose.yaml exec launcher launch/dsgd-mpirun --hostfile docker/hostfile.compose -np 4 "
    "--threads 1 --bind none -- python -m dsgd.train --algorithm dsgd --topology ring --dataset fashion-mnist "
    "--model cnn --epochs 1 --out /home/dsgd/runs/ring": Skip("needs Docker", ranks=4),
    "docker compose -f docker/compose.yaml exec launcher ls /home/dsgd/runs/ring": Skip("needs Docker"),
    "docker compose -f docker/compose.yaml down -v": Skip("needs Docker"),
    "DSGD_DOCKERFILE=docker/Dockerfile DSGD_IMAGE=dsgd:gpu docker compose -f docker/compose.yaml -f "
    "docker/compose.gpu.yaml up -d --build": Skip("needs Docker and GPUs"),
    "launch/dsgd-mpirun --hostfile hostfile --per-node 4 -- python -m dsgd.train --config "
    "experiments/recipes/postlocal-cifar10-resnet56.yaml --workers-per-rank 4 --data-dir DATA/cifar-10-batches-py":
        Skip(CLUSTER + ", with 4 GPUs per node", ranks=8),
    "PATH=$PWD/.venv/bin:$PATH .venv/bin/python -m pytest tests/launch -q -rs":
        Skip("tests of the suite, which runs them"),
    # experiments/README.md
    "python experiments/outer_optimizers.py all --to docs/outer-optimizers":
        Covered("tests/experiments/test_experiments.py", '"outer_optimizers.py"'),
    "python experiments/outer_optimizers.py report --to docs/outer-optimizers":
        Covered("tests/experiments/test_experiments.py", '"outer_optimizers.py"'),
    "python experiments/outer_optimizers.py all --quick": Covered("tests/experiments/test_experiments.py",
                                                                  '"outer_optimizers.py"'),
    "python experiments/compression.py all --to docs/compression":
        Covered("tests/experiments/test_experiments.py", '"all", "--quick"'),
    "python experiments/compression.py report --to docs/compression": Run(
        "compression-report", extra="--to {tmp}", prepare=copy_compression_reports, check=same_compression_report),
    # (into a copy of the committed JSON, so the committed README.md and plots are not rewritten)
    "python experiments/compression.py all --quick": Covered("tests/experiments/test_experiments.py", '"all", "--quick"'),
    "python experiments/compression.py all --quick --to docs/compression":
        Covered("tests/experiments/test_experiments.py", '"all", "--quick"'),
    ".venv/bin/python experiments/heterogeneity.py sweep":
        Covered("tests/experiments/test_heterogeneity.py", '"all", "--quick"'),
    "python experiments/heterogeneity.py sweep": Covered("tests/experiments/test_heterogeneity.py", '"all", "--quick"'),
    "python experiments/heterogeneity.py scale": Covered("tests/experiments/test_heterogeneity.py", '"all", "--quick"'),
    "python experiments/heterogeneity.py report --to docs/heterogeneity":
        Covered("tests/experiments/test_heterogeneity.py", '"--to"'),
    "python experiments/heterogeneity.py all --quick":
        Covered("tests/experiments/test_heterogeneity.py", '"all", "--quick"'),
    "python experiments/heterogeneity.py all --quick --to docs/heterogeneity":
        Covered("tests/experiments/test_heterogeneity.py", '"all", "--quick"'),
    "python experiments/compare_topologies.py --to docs/topology-comparison":
        Covered("tests/experiments/test_experiments.py", '"--quick"'),
    "python experiments/compare_topologies.py --out runs/compare-topologies-dirichlet0.1 --to "
    "docs/topology-comparison/dirichlet-0.1 -- --partition dirichlet:alpha=0.1":
        Covered("tests/experiments/test_experiments.py", '"--quick"'),
    "python experiments/compare_topologies.py --quick --out /tmp/q": Covered("tests/experiments/test_experiments.py",
                                                                             '"--quick"'),
    "python experiments/compare_topologies.py --quick --to docs/topology-comparison":
        Covered("tests/experiments/test_experiments.py", '"--quick"'),
    "python experiments/compare_topologies.py --workers 16 32 --ranks 4 --epochs 100 --eval-every 240 "
    "--eval-samples 0 --timeout 36000 --out runs/compare-topologies-cifar10 -- --dataset cifar10 --data-dir "
    "DATA/cifar-10-batches-py --model resnet20 --norm bn --batch-size 128 --lr 0.1 --lr-scaling linear --start-lr "
    "0.1 --warmup-epochs 5 --milestones 50,75 --weight-decay 1e-4 --nesterov true --bn-batches 100":
        Skip("needs CIFAR-10 and GPUs (10 h per job allowed)"),
    "mpirun -np 2 --oversubscribe python -m mpi4py -m dsgd.train --config "
    "experiments/recipes/qsr-localadamw-fashion-mnist-cpu.yaml --out runs/qsr-cpu":
        Run("qsr-recipe", extra="--epochs 0.2 --eval-every 2 --eval-samples 100 --out {tmp}/run", check=trained),
    "python experiments/reproduce.py all --seeds 0 1 2 --to docs/reproductions":
        Covered("tests/experiments/test_reproduce.py", '"--quick"'),
    "python experiments/reproduce.py qsr --seeds 0 1": Covered("tests/experiments/test_reproduce.py", '"--quick"'),
    "python experiments/reproduce.py postlocal --quick --out /tmp/r": Covered("tests/experiments/test_reproduce.py",
                                                                               '"postlocal", "--quick"'),
    "python experiments/reproduce.py postlocal --quick --to docs/reproductions":
        Covered("tests/experiments/test_reproduce.py", '"postlocal", "--quick"'),
}
RUNS = {command: plan for command, plan in COMMANDS.items() if isinstance(plan, Run)}


def shell_env(extra: Optional[dict] = None) -> dict:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", MPLBACKEND="Agg")
    if ROOT:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.update(extra or {})
    return env


def trainer_argv(command: str) -> Optional[list]:
    """The arguments dsgd.train gets from COMMAND: after `-m dsgd.train`, or what launch/slurm.sbatch adds."""
    words = shlex.split(command)
    if "dsgd.train" in words:
        return words[words.index("dsgd.train") + 1:]
    script = next((i for i, w in enumerate(words) if w.endswith("slurm.sbatch")), None)
    if script is None:
        return None
    assignments = dict(w.split("=", 1) for w in words[:script] if re.fullmatch(r"[A-Z_]+=\S*", w))
    default = re.search(r"^recipe=\$\{DSGD_RECIPE:-([^}]+)\}", SLURM_SCRIPT.read_text(), re.M).group(1)
    return ["--config", assignments.get("DSGD_RECIPE", default), *words[script + 1:]]


# -- the tests -----------------------------------------------------------------------------------
def test_every_doc_command_is_classified():
    shown = doc_commands()
    unclassified = [f"{' '.join(where)}: {command}" for command, where in shown.items() if command not in COMMANDS]
    assert not unclassified, "doc commands missing from COMMANDS (say how each runs or why not):\n" + \
        "\n".join(unclassified)
    stale = [command for command in COMMANDS if command not in shown]
    assert not stale, "COMMANDS entries that no doc shows any more:\n" + "\n".join(stale)


def test_no_untagged_block_holds_a_command():
    untagged = [f"{path.relative_to(REPO)}:{start}: {lines[0]}" for path in DOCS
                for tag, start, lines in fenced_blocks(path)
                if tag == "" and lines and LOOKS_LIKE_A_COMMAND.match(lines[0].lstrip())]
    assert not untagged, "tag these blocks bash (commands) or text (synopses, output):\n" + "\n".join(untagged)


def test_commands_covered_elsewhere_are_there():
    for command, plan in COMMANDS.items():
        if isinstance(plan, Covered):
            source = (REPO / plan.test).read_text()
            program = next(w for w in shlex.split(command) if w.endswith(".py") or w.startswith("dsgd."))
            assert Path(program).name in source and plan.marker in source, (command, plan)


def test_trainer_settings_of_commands_that_do_not_run(monkeypatch):
    """What a cluster, Slurm or Docker command would hand the trainer is a valid run for its ranks."""
    from dsgd.config import ConfigError, parse
    from dsgd.train import build
    monkeypatch.chdir(REPO)  # recipe paths are relative to the repository root, as in the docs
    checked = 0
    for command, plan in COMMANDS.items():
        if isinstance(plan, Skip) and plan.ranks:
            argv = trainer_argv(command)
            assert argv is not None, command
            try:
                cfg, _ = parse(argv)
                build.check(cfg, plan.ranks)
            except (ConfigError, SystemExit) as e:
                pytest.fail(f"{command}\n  on {plan.ranks} ranks: {e}")
            checked += 1
    assert checked >= 10


def test_the_raw_mpirun_lines_are_what_the_wrapper_runs():
    for command, plan in COMMANDS.items():
        if not isinstance(plan, DryRunOf):
            continue
        assert isinstance(COMMANDS[plan.wrapper_command], Run), "the wrapper command itself must run"
        wrapper = shlex.split(plan.wrapper_command)
        env = {"PATH": shell_env()["PATH"], "DSGD_CORES_PER_NODE": str(plan.cores)}
        res = subprocess.run([wrapper[0], "--dry-run", *wrapper[1:]], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        line = " ".join(shlex.split(res.stdout)).replace(" -x DSGD_CORES_PER_NODE", "")
        expected = command if ROOT else command.replace(" --allow-run-as-root", "")
        assert line == expected


@pytest.mark.parametrize("command", RUNS, ids=[plan.name for plan in RUNS.values()])
def test_doc_command_runs(command, tmp_path):
    plan = RUNS[command]
    if plan.prepare:
        plan.prepare(tmp_path)
    line = f"{shlex.join(shlex.split(command))} {plan.extra.format(tmp=tmp_path)}"
    env = shell_env({key: value.format(tmp=tmp_path) for key, value in (plan.env or {}).items()})
    proc = subprocess.Popen(["bash", "-c", line], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{line} did not finish in 300 s:\n{output[-3000:]}")
    assert proc.returncode == 0, f"{line}\nexit status {proc.returncode}:\n{output[-4000:]}"
    if plan.check:
        plan.check(tmp_path, output)

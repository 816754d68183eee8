"""One launch policy: `launch/dsgd-mpirun --dry-run` and `dsgd.launcher.mpirun_command` (what the demo,
the experiments and the multi-rank tests run) give the same mpirun line, and the demo prints the
lines it runs."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from dsgd import launcher
from launch_helpers import WRAPPER, launch_env, run_with_timeout

# The same machine for both entry points: 8 cores, some variables to forward.
ENV = {"DSGD_CORES_PER_NODE": "8", "DSGD_DATA_DIR": "/data", "NCCL_DEBUG": "INFO"}
TRAIN = ["-m", "dsgd.train", "--epochs", "1"]


def wrapper_line(*args: str, env: dict = ENV) -> list:
    res = run_with_timeout([str(WRAPPER), "--dry-run", *args], timeout=30, env=launch_env(env))
    assert res.returncode == 0, res.stdout
    return shlex.split(res.stdout)


def api_line(np: int, args: list, env: dict = ENV, **policy) -> list:
    return launcher.mpirun_command(np, args, python="python", environ=launch_env(env), **policy)


@pytest.fixture
def hostfile(tmp_path) -> str:
    path = tmp_path / "hosts"
    path.write_text("node01 slots=2  # small\nnode02 slots=3\n")
    return str(path)


CASES = {
    "one host": (["-np", "4"], dict(np=4)),
    "more ranks than cores, oversubscribed": (["-np", "16", "--oversubscribe"], dict(np=16, oversubscribe=True)),
    "threads": (["-np", "2", "--threads", "3"], dict(np=2, threads=3)),
    "no binding, mca": (["-np", "4", "--bind", "none", "--mca", "btl", "self,tcp"],
                        dict(np=4, bind="none", mca=[("btl", "self,tcp")])),
    "hostfile slots": (["--hostfile", "{hostfile}", "-np", "5"], dict(np=5, hostfile="{hostfile}")),
    "per node": (["--hostfile", "{hostfile}", "--per-node", "2", "-np", "4"],
                 dict(np=4, hostfile="{hostfile}", per_node=2)),
}


@pytest.mark.parametrize("case", CASES)
def test_wrapper_and_python_api_give_the_same_line(case, hostfile):
    cli, api = CASES[case]
    cli = [word.format(hostfile=hostfile) for word in cli]
    api = {key: value.format(hostfile=hostfile) if isinstance(value, str) else value for key, value in api.items()}
    np = api.pop("np")
    line = wrapper_line(*cli, "--", "python", *TRAIN)
    assert line == api_line(np, TRAIN, **api)
    assert line[-len(TRAIN) - 3:] == ["python", "-m", "mpi4py", *TRAIN]
    assert {"DSGD_DATA_DIR", "NCCL_DEBUG", "PATH"} <= set(line[i + 1] for i, w in enumerate(line) if w == "-x")


def test_the_api_oversubscribes_more_ranks_than_cores_and_shows_it():
    assert api_line(16, TRAIN) == wrapper_line("-np", "16", "--oversubscribe", "--", "python", *TRAIN)
    assert api_line(8, TRAIN) == wrapper_line("-np", "8", "--", "python", *TRAIN)
    assert "--map-by" in api_line(8, TRAIN) and "slot:PE=1" in api_line(8, TRAIN)


def test_a_fault_tolerant_line_turns_ulfm_on_right_after_mpirun_and_keeps_the_rest():
    line = api_line(4, TRAIN)
    assert launcher.fault_tolerant(line) == [line[0], "--with-ft", "ulfm", *line[1:]]
    spawned = launcher.fault_tolerant(line, replacements=True)
    assert spawned[:3] == [line[0], "--with-ft", "ulfm"] and spawned[-len(line) + 1:] == line[1:]
    assert " ".join(spawned[3:-len(line) + 1]) == \
        "--prtemca state_base_recoverable 1 --prtemca state_base_notify_errors 1"


def test_python_m_dsgd_launcher_is_the_same_command_line(hostfile):
    args = ["--dry-run", "--hostfile", hostfile, "--per-node", "2", "--", "python", *TRAIN]
    res = run_with_timeout([sys.executable, "-m", "dsgd.launcher", *args], timeout=30, env=launch_env(ENV))
    assert res.returncode == 0, res.stdout
    assert shlex.split(res.stdout) == wrapper_line(*args[1:])
    bad = run_with_timeout([sys.executable, "-m", "dsgd.launcher", "--threads", "0", "--", "true"], timeout=30)
    assert bad.returncode == 2 and bad.stdout == "python -m dsgd.launcher: error: --threads must be an integer >= 1, got '0'\n"


STAND_IN = """#!{python}
import json, pathlib, sys
with open({log!r}, "a") as f:
    f.write(json.dumps(sys.argv) + "\\n")
out = pathlib.Path(sys.argv[sys.argv.index("--out") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.jsonl").write_text(json.dumps({{"test_acc": 0.5, "consensus_distance": 0.0, "bytes_sent": 1e6}}))
"""


def test_the_demo_prints_exactly_the_lines_it_runs(tmp_path):
    """A stand-in mpirun records its argv; each printed line, split by a shell, is that argv."""
    log, stand_in = tmp_path / "argv.jsonl", tmp_path / "mpirun"
    stand_in.write_text(STAND_IN.format(python=sys.executable, log=str(log)))
    stand_in.chmod(0o755)
    env = launch_env({"DSGD_MPIRUN": str(stand_in), "DSGD_CORES_PER_NODE": "2"})
    res = run_with_timeout([sys.executable, "-m", "dsgd.demo", "--ranks", "3", "--steps", "2",
                            "--out", str(tmp_path / "demo")], timeout=120, env=env)
    assert res.returncode == 0, res.stdout
    printed = [shlex.split(line.split(": ", 1)[1]) for line in res.stdout.splitlines() if line.startswith("== ")]
    ran = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(printed) == 5 and printed == ran
    for line in ran:
        assert line[0] == str(stand_in) and "slot:OVERSUBSCRIBE" in line  # 3 ranks on 2 cores, shown
        train = line[line.index(sys.executable) + 3:]
        assert line[line.index(sys.executable):][:3] == [sys.executable, "-m", "mpi4py"]
        assert line == wrapper_line("-np", "3", "--oversubscribe", "--", sys.executable, *train,
                                    env={"DSGD_MPIRUN": str(stand_in), "DSGD_CORES_PER_NODE": "2"})
    assert "dsgd ring" in res.stdout and "test acc" in res.stdout

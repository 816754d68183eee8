"""launch/slurm.sbatch without Slurm: a stand-in srun (mpirun on this machine) and scontrol.

The time-limit warning (SIGUSR1 to the batch script) reaches the ranks, they checkpoint and exit
with status 4, the script asks Slurm to requeue the job, and the requeued script continues the
run from that checkpoint to the end.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch_helpers import REPO

SCRIPT = REPO / "launch" / "slurm.sbatch"


def fake_slurm(bin_dir: Path, log: Path) -> None:
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        "#!/usr/bin/env bash\n"
        "while [ $# -gt 0 ] && [ \"${1#-}\" != \"$1\" ]; do shift; done  # srun's own options\n"
        "exec mpirun -np 2 --oversubscribe --bind-to none \"$@\"\n")
    (bin_dir / "scontrol").write_text(f"#!/usr/bin/env bash\necho \"$@\" >> {log}\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "activate").exists(), reason="the script sources .venv")
@pytest.mark.parametrize("launcher", ["srun", "mpirun"])
def test_time_limit_warning_checkpoints_requeues_and_the_requeued_job_continues(tmp_path, launcher):
    """Either launcher: srun (a stand-in) or launch/dsgd-mpirun inside the allocation (real mpirun)."""
    log = tmp_path / "scontrol.log"
    fake_slurm(tmp_path / "bin", log)
    (tmp_path / "recipe.yaml").write_text("model: mlp\nalgorithm: dsgd\ntopology: complete\nsteps_per_epoch: 300\n"
                                          "epochs: 3\neval_every: 900\neval_samples: 300\nlog_every: 10000\n")
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
               f"{os.environ['PATH']}", SLURM_JOB_ID="42", SLURM_JOB_NAME=f"test-{os.getpid()}",
               DSGD_RECIPE=str(tmp_path / "recipe.yaml"), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1", DSGD_LAUNCHER=launcher,
               SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="2(x1)", SLURM_CPUS_PER_TASK="1")
    env["SLURM_JOB_NAME"] += f"-{launcher}"
    run_dir = REPO / "runs" / f"slurm-{env['SLURM_JOB_NAME']}"
    try:
        proc = subprocess.Popen(["bash", str(SCRIPT)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints" / "latest.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.1)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGUSR1)  # what --signal=B:USR1@180 does
        out, _ = proc.communicate(timeout=120)
        step = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"]
        assert proc.returncode == 4, out[-3000:]
        assert 0 < step < 900 and f"stopped by SIGUSR1 at step {step}" in out
        assert log.read_text().split() == ["requeue", "42"]
        again = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert f"resumed from {run_dir.relative_to(REPO)}/checkpoints/step-{step:08d} at step {step}" in again.stdout
        assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"] == 900
    finally:
        if "proc" in locals() and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(run_dir)])


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "activate").exists(), reason="the script sources .venv")
def test_the_default_recipe_exists_and_a_missing_one_is_one_line(tmp_path):
    default = next(line for line in SCRIPT.read_text().splitlines() if line.startswith("recipe="))
    assert (REPO / default.split(":-", 1)[1].split("}", 1)[0]).is_file(), default
    fake_slurm(tmp_path / "bin", tmp_path / "scontrol.log")
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
               DSGD_RECIPE=str(tmp_path / "nowhere.yaml"), SLURM_JOB_NAME="missing-recipe")
    res = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and f"recipe not found: {tmp_path / 'nowhere.yaml'}" in res.stderr

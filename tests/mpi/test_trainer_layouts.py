"""One algorithm however its workers are spread: `mpirun -np 4` (4 ranks x 1) ends bit for bit where
the same 4 workers end in one process, and a 2 ranks x 2 job resumed from that one-process run's
middle checkpoint ends there too. This is what lets the in-process tests (tests/inprocess) stand for
the distributed trainer: every rule family is checked here once. The families run in turn in one job
per layout (mpi_harness.Batch), each as `python -m dsgd.train` runs it."""
import shutil

import pytest
import torch

from inprocess.test_resume import RULE_FLAGS, RULES
import mpi_harness
from trainer import TINY, metrics, train, train_args, train_here, worker_params

CASES = {
    "dsgd": ["--algorithm", "dsgd", "--topology", "ring"],
    # momentum (0.9 from FAST) gossiped like the parameters, while the parameter exchange is in flight
    "dsgd-mixed-momentum": ["--algorithm", "dsgd", "--topology", "ring", "--mix-optimizer-state", "true"],
    **RULES,
}
# One case per rule family under real ranks: plain D-SGD runs inside the mixed-momentum case, D^2 is exact
# diffusion's module with another W, CHOCO with sign is CHOCO with a deterministic codec (qsgd's draws are
# the harder case). Every case of CASES resumes exactly in one process (tests/inprocess/test_resume.py).
FAMILIES = [name for name in CASES if name not in ("dsgd", "d2", "choco-sign")]
# averages through allreduce sum in the MPI library's order, which depends on the layout: round-off only
# (the same runs resume bit for bit in one layout: tests/inprocess/test_resume.py). DiLoCo, streaming
# DiLoCo and SPARTA average in worker order (Mixer.mix_in_worker_order_) and are held bit for bit.
ALLREDUCE_AVERAGES = {"csgd-powersgd"}


def same(got, want, name, where):
    if name in ALLREDUCE_AVERAGES:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(got, want), f"{where}: {(got - want).abs().max()}"


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """name -> the run directory of the 4 workers trained in this process (made on first use)."""
    runs = {}

    def get(name):
        if name not in runs:
            runs[name] = tmp_path_factory.mktemp(name)
            train_here(4, runs[name], *RULE_FLAGS, *CASES[name], "--vectorize", "off")
        return runs[name]
    return get


@pytest.fixture(scope="module")
def four_ranks(tmp_path_factory):
    """name -> the run directory of `mpirun -np 4` for that family, with the job's output. The trainer
    runs as `python -m dsgd.train` would, every family in turn in one job (mpi_harness.Batch)."""
    dirs = {name: tmp_path_factory.mktemp(f"np4-{name}") for name in FAMILIES}
    jobs = mpi_harness.Batch({name: (4, train_args(dirs[name], *RULE_FLAGS, *CASES[name])) for name in FAMILIES})
    return lambda name: (dirs[name], jobs.output(name))


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory, in_process):
    """name -> the one-process run of that family resumed at step 6 as 2 ranks x 2 workers (1 x 4 -> 2 x 2),
    every family in turn in one `mpirun -np 2` job."""
    dirs = {}
    for name in FAMILIES:
        dirs[name] = tmp_path_factory.mktemp(f"np2-{name}") / "resumed"
        shutil.copytree(in_process(name), dirs[name])
    jobs = mpi_harness.Batch({name: (2, train_args(dirs[name], "--resume", str(dirs[name] / "checkpoints" /
                                                                                  "step-00000006"),
                                                   "--workers-per-rank", "2")) for name in FAMILIES})
    return lambda name: (dirs[name], jobs.output(name))


@pytest.mark.parametrize("name", FAMILIES)
def test_four_ranks_of_one_worker_end_where_one_process_of_four_does(four_ranks, in_process, name):
    run, log = four_ranks(name)
    same(worker_params(run), worker_params(in_process(name)), name, "4 x 1")
    assert [m["test_acc"] for m in metrics(run)] == pytest.approx(
        [m["test_acc"] for m in metrics(in_process(name))], abs=1e-3 if name in ALLREDUCE_AVERAGES else 0)
    if not torch.cuda.is_available():  # the cpu fallback notice is the job's, not each rank's
        assert log.count("no CUDA device visible") == 1, log[-2000:]


@pytest.mark.parametrize("name", FAMILIES)
def test_two_ranks_of_two_workers_resume_the_one_process_run_exactly(two_by_two, in_process, name):
    """Several ranks and several workers per rank in one checkpoint, written after a resume that
    changed the layout (1 x 4 -> 2 x 2)."""
    resumed, _ = two_by_two(name)
    assert sorted(p.name for p in (resumed / "checkpoints" / "step-00000012").iterdir()) == [
        "manifest.json", "rank0.pt", "rank1.pt"]
    same(worker_params(resumed), worker_params(in_process(name)), name, "2 x 2 resumed")


def test_mixing_the_momentum_changes_the_trajectory(in_process):
    assert not torch.equal(worker_params(in_process("dsgd-mixed-momentum")), worker_params(in_process("dsgd")))


def test_resume_with_workers_no_rank_layout_can_hold_is_refused_with_one_line_unless_resized(tmp_path):
    train_here(2, tmp_path, *TINY, "--algorithm", "local", "--local-steps", "2", "--steps-per-epoch", "4",
               "--eval-every", "4")
    res = train(3, tmp_path, "--resume", str(tmp_path), "--workers-per-rank", "1", ok=False)
    assert res.returncode == 2
    # 2 workers cannot be spread over 3 ranks: no --workers-per-rank to suggest, only --resize
    assert ("cannot resume: the checkpoint has 2 workers (1 ranks x 2), this run has 3 (3 x 1); give "
            "--resize true to continue with 3 workers (not bit-exact)") in res.stdout
    assert "Traceback" not in res.stdout

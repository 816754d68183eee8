"""Under mpirun: a new run over another run's directory is refused by every rank alike, or replaces
it whole with --overwrite true (here on the torch.distributed backend, with --comm-timeout); progress
written through mpirun to a pipe stays plain lines."""
import json

import yaml

from trainer import TINY, metrics, train

SHORT = [*TINY, "--steps-per-epoch", "4", "--eval-every", "2", "--eval-samples", "200"]


def files(out):
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


def test_a_two_rank_run_over_a_three_rank_run_is_refused_or_replaces_it_whole(tmp_path):
    out = tmp_path / "run"
    log = train(3, out, *SHORT, "--algorithm", "dsgd", "--topology", "exponential", "--checkpoint-every", "1",
                "--keep-checkpoints", "0")
    # mpirun writes to a pipe here, though each rank's stdout is a terminal: plain progress lines
    assert "step 4/4 (100.0%)" in log and "\r" not in log
    before = files(out)

    res = train(2, out, *SHORT, "--algorithm", "csgd", ok=False)
    assert res.returncode == 2, res.stdout[-3000:]
    errors = [line for line in res.stdout.splitlines() if line.startswith("dsgd.train:")]
    assert errors == [f"dsgd.train: error: {out} already holds a run (config.yaml, metrics.jsonl, checkpoints/, "
                      f"logs/, tensorboard/): continue it with --resume {out}, replace it with --overwrite true, "
                      f"or give another --out"], res.stdout[-3000:]
    assert "Traceback" not in res.stdout
    assert files(out) == before

    log = train(2, out, *SHORT, "--algorithm", "csgd", "--steps-per-epoch", "2", "--overwrite", "true",
                "--backend", "torch", "--comm-timeout", "60")
    assert f"dsgd.train: --overwrite true: replaced the earlier run in {out}" in log
    assert [m["step"] for m in metrics(out)] == [2]
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["rank0.log", "rank1.log"]
    steps = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert steps == ["step-00000000", "step-00000002"]
    assert all(sorted(p.name for p in (out / "checkpoints" / s).iterdir()) == ["manifest.json", "rank0.pt", "rank1.pt"]
               for s in steps)
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["world_size"] == 2
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["algo"]["algorithm"], saved["run"]["backend"], saved["run"]["comm_timeout"]) == ("csgd", "torch", 60)
    assert len(list((out / "tensorboard").iterdir())) == 1

"""A straggler on purpose (--straggler-rank/-delay/-random): only that rank waits, a fixed delay or a
seeded uniform draw in [0, 2 x delay] per step, the same on every run."""
from dsgd.config import parse
from dsgd.train.loop import straggler


def _cfg(*flags):
    cfg, _ = parse(["--straggler-rank", "2", *flags])
    return cfg


def test_only_the_straggler_rank_waits_and_a_fixed_delay_is_the_same_every_step():
    cfg = _cfg("--straggler-delay", "0.05")
    assert straggler(cfg, 0) is None and straggler(cfg, 1) is None
    wait = straggler(cfg, 2)
    assert [wait(s) for s in range(4)] == [0.05] * 4


def test_no_delay_means_no_straggler():
    assert straggler(_cfg(), 2) is None


def test_a_random_delay_is_uniform_in_0_to_twice_the_delay_and_seeded_by_step():
    wait = straggler(_cfg("--straggler-delay", "0.1", "--straggler-random", "true"), 2)
    draws = [wait(s) for s in range(400)]
    assert all(0 <= d <= 0.2 for d in draws)
    assert 0.09 < sum(draws) / len(draws) < 0.11          # mean of U[0, 0.2] is 0.1
    assert draws == [straggler(_cfg("--straggler-delay", "0.1", "--straggler-random", "true"), 2)(s)
                     for s in range(400)]
    assert len(set(draws)) == len(draws)


def test_a_straggler_rank_outside_the_job_is_refused(tmp_path, capsys):
    from dsgd.train.cli import main
    assert main(["--straggler-rank", "3", "--straggler-delay", "0.1", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == \
        "dsgd.train: error: --straggler-rank 3 is not a rank of this job (ranks 0..0)"

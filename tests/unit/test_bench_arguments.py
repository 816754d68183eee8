"""The argument parsers of `python -m dsgd.bench mix` and `seam`: bad input is a usage error (status 2, a
message that names it), repeated options add up. These modules import mpi4py.MPI at the top, which would
start MPI in this process (the unit suite never does), so they are loaded against a stand-in whose
COMM_WORLD has the world size a real run would have; the stand-in is gone after each test."""
import importlib.util
import sys
import types

import mpi4py
import pytest


class World:
    def __init__(self, size: int):
        self.size = size

    def Get_size(self) -> int:
        return self.size

    def Get_rank(self) -> int:
        return 0


@pytest.fixture
def bench_module(monkeypatch):
    """load(name, world_size): a private copy of dsgd.bench.<name> bound to the stand-in MPI."""
    def load(name: str, world_size: int = 1) -> types.ModuleType:
        stand_in = types.ModuleType("mpi4py.MPI")
        stand_in.COMM_WORLD = World(world_size)
        monkeypatch.setitem(sys.modules, "mpi4py.MPI", stand_in)
        monkeypatch.setattr(mpi4py, "MPI", stand_in, raising=False)
        spec = importlib.util.find_spec(f"dsgd.bench.{name}")
        module = importlib.util.module_from_spec(spec)  # not registered: nothing else sees this copy
        spec.loader.exec_module(module)
        return module
    return load


def usage_error(parse, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        parse(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_mix_refuses_an_unknown_topology_by_name(bench_module, capsys):
    mix = bench_module("mix", world_size=2)
    assert "unknown topology 'moebius'" in usage_error(mix.parse_args, ["--topology", "moebius"], capsys)


@pytest.mark.parametrize("numel, message", [("abc", "must be an integer >= 1, got 'abc'"), ("0", "must be >= 1, got 0")])
def test_mix_refuses_a_size_that_is_not_a_count_naming_it(bench_module, capsys, numel, message):
    mix = bench_module("mix", world_size=2)
    assert f"argument --numel: {message}" in usage_error(mix.parse_args, ["--numel", numel], capsys)


def test_mix_measures_every_size_given_in_order_on_the_chosen_topologies(bench_module):
    mix = bench_module("mix", world_size=2)
    args = mix.parse_args(["--numel", "1000", "--repeats", "3", "--numel", "7", "--topology", "ring", "complete"])
    assert (args.numel, args.topology, args.repeats) == ([1000, 7], ["ring", "complete"], 3)


def test_mix_by_default_measures_two_model_sizes_on_six_topologies_over_mpi(bench_module):
    args = bench_module("mix").parse_args([])
    assert args.numel == [270_000, 11_000_000]
    assert args.topology == ["complete", "ring", "torus", "exponential", "one-peer-exponential", "identity"]
    assert (args.backend, args.repeats, args.warmup) == ("mpi", 20, 3)


def test_seam_refuses_worker_counts_the_ranks_do_not_divide(bench_module, capsys):
    seam = bench_module("seam", world_size=2)
    err = usage_error(seam.parse_args, ["--workers", "33", "--plan-ranks", "3"], capsys)  # 3 divides 33, 2 does not
    assert "--workers 33 is not a multiple of the 2 ranks" in err


def test_seam_refuses_worker_counts_the_planned_ranks_do_not_divide(bench_module, capsys):
    seam = bench_module("seam", world_size=2)
    err = usage_error(seam.parse_args, ["--workers", "64", "--plan-ranks", "3"], capsys)
    assert "--workers 64 is not a multiple of the 2 ranks and of --plan-ranks 3" in err


def test_seam_takes_worker_counts_both_divide(bench_module):
    args = bench_module("seam", world_size=2).parse_args(["--workers", "32", "64", "--plan-ranks", "4"])
    assert (args.workers, args.plan_ranks) == ([32, 64], 4)


def test_outer_refuses_fewer_timed_steps_than_one_period(bench_module, capsys):
    outer = bench_module("outer")
    err = usage_error(outer.parse_args, ["--repeats", "3", "--period", "4"], capsys)
    assert "--repeats 3 must be at least --period 4: the timed steps must include an outer step" in err
    assert outer.parse_args(["--repeats", "4", "--period", "4"]).repeats == 4

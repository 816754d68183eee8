"""Replacements' pieces without MPI: the join record's line, the survivors' schedule carried to a new
process (its graph by spec), the environment it is started with, the command that starts it, and
the one-line refusals. A kill, a spawn and a join under real ranks are tests/mpi/test_elastic_join.py."""
import pickle
import sys

import numpy as np
import pytest

import dsgd
import topologies
from dsgd.comm import ulfm
from dsgd.elastic import MembershipJoin, join
from dsgd.elastic.topology import rebuild


def test_a_join_is_one_line():
    one = MembershipJoin(9, (3,), (6, 7), 6, 8, "ring", None, 2, 4.56)
    assert one.line() == "elastic: step 9: rank 3 joined (workers 6, 7); 6 -> 8 workers, topology ring, " \
                         "state from rank 2, joined in 4.56s"
    two = MembershipJoin(4, (2, 3), (2, 3), 2, 4, "complete", "ring cannot be built on 2 workers", 1, 1.0)
    assert "ranks 2, 3 joined (workers 2, 3)" in two.line()
    assert two.line().endswith("; ring cannot be built on 2 workers")


@pytest.mark.parametrize("spec, n, new_n", [
    ("ring", 8, 6), ("torus", 12, 9), ("torus", 9, 6), ("hypercube", 8, 6), ("one-peer-exponential", 8, 6),
    ("directed-exponential", 8, 6), ("random-regular:degree=3,seed=4", 8, 6), ("erdos-renyi", 8, 6),
])
def test_the_survivors_schedule_reaches_a_replacement_with_the_same_graph(spec, n, new_n):
    topo, _ = rebuild(topologies.from_spec(spec, n), new_n)   # a join follows a loss: the graph is a rebuilt one
    schedule = dsgd.algorithms.dsgd(topo).build(new_n).schedule
    carried = pickle.loads(join.dumps({"schedule": schedule}))["schedule"]
    assert carried.topology.spec == topo.spec and carried.topology.period == topo.period
    for k in range(min(topo.period, 20)):
        assert np.array_equal(carried.topology.W(k), topo.W(k))
    assert dataclasses_equal(carried, schedule)


def dataclasses_equal(a, b) -> bool:
    return type(a) is type(b) and all(getattr(a, f) == getattr(b, f) for f in a.__dataclass_fields__ if f != "topology")


def test_a_replacement_gets_this_processs_environment_less_the_launchers_own():
    env = {"PYTHONPATH": "/repo", "OMP_NUM_THREADS": "1", "OMPI_COMM_WORLD_RANK": "2", "PMIX_RANK": "2",
           "PRTE_LAUNCHED": "1", "OPAL_PREFIX": "/x", "CUDA_VISIBLE_DEVICES": "1", "WITH SPACE": "a b"}
    assert ulfm.environment_args(env) == ["PYTHONPATH=/repo", "OMP_NUM_THREADS=1", "WITH SPACE=a b"]


def test_a_replacement_runs_this_interpreter_with_the_command_line_this_process_had(monkeypatch):
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "mpi4py", "train.py", "--steps", "3"])
    assert join.replacement_command() == (sys.executable, ["-m", "mpi4py", "train.py", "--steps", "3"])


def test_replace_without_elastic_and_on_another_backend_is_refused_in_one_line():
    with pytest.raises(ValueError) as e:
        dsgd.start("self", replace=True)
    assert "replace=True needs elastic=True" in str(e.value)
    with pytest.raises(ValueError) as e:
        dsgd.start("torch", elastic=True, replace=True)
    assert "needs the mpi backend" in str(e.value) and "\n" not in str(e.value)

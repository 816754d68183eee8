"""--comm-timeout reaches torch.distributed's group, and its timeouts are reported like MPI's.

torch.distributed is stubbed here; tests/e2e/test_run_directory_mpi.py trains with it for real.
"""
from datetime import timedelta

import pytest
import torch

from dsgd.comm import torch_dist
from dsgd.comm.mpi import CommTimeout


@pytest.fixture
def group(monkeypatch):
    """A stand-in default group that records init_process_group's keywords."""
    seen = {}
    d = torch_dist.dist
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setattr(d, "is_initialized", lambda: False)
    monkeypatch.setattr(d, "init_process_group", lambda backend, **kw: seen.update(backend=backend, **kw))
    monkeypatch.setattr(d, "get_rank", lambda: 1)
    monkeypatch.setattr(d, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch_dist.atexit, "register", lambda f: None)
    return seen


def test_the_comm_timeout_setting_is_the_groups_timeout(group, monkeypatch):
    monkeypatch.setenv("DSGD_COMM_TIMEOUT", "30")  # what `--comm-timeout 30` sets for every rank
    torch_dist.TorchDistCommunicator("cpu")
    assert group == {"backend": "gloo", "timeout": timedelta(seconds=30)}


def test_without_a_comm_timeout_the_group_keeps_its_default(group, monkeypatch):
    monkeypatch.delenv("DSGD_COMM_TIMEOUT", raising=False)
    torch_dist.TorchDistCommunicator("cpu")
    assert group["timeout"] == timedelta(seconds=torch_dist.DEFAULT_TIMEOUT_S)
    torch_dist.TorchDistCommunicator("cpu", timeout_s=2.5)
    assert group["timeout"] == timedelta(seconds=2.5)


def test_a_gloo_timeout_is_reported_naming_the_rank_and_what_it_waited_on(group, monkeypatch):
    monkeypatch.setenv("DSGD_COMM_TIMEOUT", "2")
    comm = torch_dist.TorchDistCommunicator("cpu")

    def times_out(*args, **kwargs):  # gloo's own words
        raise RuntimeError("[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 2000ms for recv operation "
                           "to complete")

    class Work:
        wait = staticmethod(times_out)

    monkeypatch.setattr(torch_dist.dist, "all_reduce", times_out)
    monkeypatch.setattr(torch_dist.dist, "batch_isend_irecv", lambda ops: [Work()])
    monkeypatch.setattr(torch_dist.dist, "P2POp", lambda *args, **kwargs: None)
    with pytest.raises(CommTimeout, match=r"^rank 1 waited more than 2s on: torch.distributed allreduce$"):
        comm.allreduce_max(1.0)
    pending = comm.iexchange([(0, torch.zeros(3))], [(0, torch.zeros(3))])
    with pytest.raises(CommTimeout, match=r"^rank 1 waited more than 2s on: torch.distributed receive from rank 0$"):
        pending.wait()


def test_other_errors_pass_through(group, monkeypatch):
    comm = torch_dist.TorchDistCommunicator("cpu")

    def broken(*args, **kwargs):
        raise RuntimeError("Connection closed by peer")

    monkeypatch.setattr(torch_dist.dist, "all_reduce", broken)
    with pytest.raises(RuntimeError, match="Connection closed by peer"):
        comm.allreduce_floats([1.0])

"""Device choice is honoured or refused in one line; ranks never share a GPU by accident; GPU setup order.

GPUs are stubbed: these run on any machine.
"""
import pytest
import torch

from dsgd import device as dev
from dsgd.comm import torch_dist
from dsgd.train import checkpoint as ckpt
from dsgd.train.cli import main

FAST = ["--model", "mlp", "--steps-per-epoch", "2", "--epochs", "1", "--eval-every", "2"]


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this process sees `n` GPUs; set_device calls are recorded."""
    calls = []

    def see(n):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", str(d))))
        return calls
    return see


@pytest.mark.parametrize("choice, local_rank, expected", [
    ("auto", 3, "cuda:3"), ("cuda", 5, "cuda:1"), ("cuda:2", 0, "cuda:2"), ("cpu", 1, "cpu")])
def test_device_choice_is_honoured(gpus, monkeypatch, choice, local_rank, expected):
    calls = gpus(4)
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", str(local_rank))
    assert str(dev.pick_device(choice)) == expected
    assert calls == ([("set_device", expected)] if expected != "cpu" else [])


@pytest.mark.parametrize("choice, visible, message", [
    ("cuda", 0, "device cuda: no CUDA device is visible to this process"),
    ("cuda:4", 4, "device cuda:4: this process sees 4 CUDA device(s)"),
    ("cdua", 4, "device must be auto, cpu, cuda or cuda:N, got 'cdua'"),
])
def test_impossible_devices_are_refused_not_replaced_by_the_cpu(gpus, choice, visible, message):
    gpus(visible)
    with pytest.raises(dev.DeviceError) as e:
        dev.pick_device(choice)
    assert str(e.value) == message


def test_a_device_typo_ends_the_run_with_one_line(tmp_path, capsys):
    assert main(FAST + ["--device", "cuda0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "dsgd.train: error: device must be auto, cpu, cuda or cuda:N, got 'cuda0'"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_on_a_machine_without_one_ends_the_run_with_one_line(tmp_path, capsys):
    assert main(FAST + ["--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "dsgd.train: error: device cuda: no CUDA device is visible to this process"


def test_ranks_that_would_share_a_gpu_are_named():
    ids = [("node1", "GPU-a"), ("node1", "GPU-a"), ("node1", "GPU-b"), ("node2", "GPU-a"), ("node2", None)]
    assert dev.shared_gpus(ids) == {("node1", "GPU-a"): [0, 1]}
    with pytest.raises(dev.DeviceError, match="ranks 0, 1 on node1 would share one GPU .*--share-gpus true"):
        dev.check_gpu_sharing(ids, allow=False)
    dev.check_gpu_sharing(ids, allow=True)
    dev.check_gpu_sharing([("node1", None)] * 4, allow=False)  # CPU ranks share nothing


def test_more_ranks_than_gpus_on_a_node_is_refused_by_the_trainer(tmp_path, capsys, monkeypatch):
    # four ranks whose devices resolve to the same GPU of one node, as gathered by the communicator
    monkeypatch.setattr(dev, "device_identity", lambda d: ("node1", "GPU-a"))
    from dsgd.comm.simulated import SelfCommunicator

    class FourRanksOneGPU(SelfCommunicator):
        def allgather_object(self, obj):
            return [obj] * 4
    monkeypatch.setattr("dsgd.comm.make_communicator", lambda backend, device: FourRanksOneGPU())
    assert main(FAST + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsgd.train: error: ranks 0, 1, 2, 3 on node1 would share one GPU")


class RecordingDist:
    """Stands in for torch.distributed: notes the calls that decide where traffic goes."""

    def __init__(self, calls):
        self.calls = calls

    def install(self, monkeypatch):
        d = torch_dist.dist
        monkeypatch.setattr(d, "is_initialized", lambda: False)
        monkeypatch.setattr(d, "init_process_group",
                            lambda backend, **kw: self.calls.append(("init_process_group", backend)))
        monkeypatch.setattr(d, "get_rank", lambda: 0)
        monkeypatch.setattr(d, "get_world_size", lambda: 2)
        monkeypatch.setattr(d, "all_reduce", lambda t, **kw: self.calls.append(("all_reduce", t.device.type)))


@pytest.fixture
def env_rendezvous(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")


def test_torch_backend_on_a_gpu_sets_the_device_first_and_keeps_cpu_values_on_gloo(
        gpus, monkeypatch, env_rendezvous):
    calls = gpus(2)
    RecordingDist(calls).install(monkeypatch)
    comm = torch_dist.TorchDistCommunicator(torch.device("cuda", 1))
    assert calls[:2] == [("set_device", "cuda:1"), ("init_process_group", "cpu:gloo,cuda:nccl")]
    comm.allreduce_floats([1.0, 2.0])
    comm.allreduce_max(3.0)
    assert calls[2:] == [("all_reduce", "cpu"), ("all_reduce", "cpu")]


def test_torch_backend_on_cpu_uses_gloo_even_where_gpus_exist(gpus, monkeypatch, env_rendezvous):
    calls = gpus(8)
    RecordingDist(calls).install(monkeypatch)
    torch_dist.TorchDistCommunicator(torch.device("cpu"))
    assert calls == [("init_process_group", "gloo")]


def test_resume_with_fewer_visible_gpus_restores_the_generators_it_has(gpus, monkeypatch):
    gpus(1)
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, i: restored.append(i))
    state = ckpt.rng_state()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 2  # saved where two GPUs were visible
    ckpt.restore_rng(state)
    assert restored == [0]

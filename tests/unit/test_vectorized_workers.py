"""Vectorized workers compute what serial workers compute, BatchNorm statistics included."""
from types import SimpleNamespace

import pytest
import torch

from dsgd.models import build_model
from dsgd.train.vectorized import VectorizedWorkerSet, choose, make_workers
from dsgd.train.workers import WorkerSet

OPT = SimpleNamespace(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4,
                      no_decay_norm_bias=True, betas=(0.9, 0.999), eps=1e-8)


def batches(K, B=8):
    g = torch.Generator().manual_seed(0)
    data = {w: (torch.randn(B, 1, 28, 28, generator=g), torch.randint(0, 10, (B,), generator=g)) for w in range(K)}
    return lambda w: data[w]


@pytest.mark.parametrize("model, norm", [("cnn", "bn"), ("cnn", "none"), ("cnn", "gn")])  # resnet20 under vmap: test_models_vmap
def test_three_steps_match_serial_workers(model, norm):
    torch.manual_seed(0)
    net = build_model(model, 1, 10, 28, norm=norm, n_groups=4)
    serial = WorkerSet(net, 3, 0, OPT, torch.device("cpu"))
    vector = VectorizedWorkerSet(net, 3, 0, OPT, torch.device("cpu"))
    for step in range(3):
        for ws in (serial, vector):
            ws.compute_grads(batches(3), physical_batch=4)
        if step == 0:  # the same gradients, to float32 round-off
            scale = serial.grads[0].abs().max()
            assert (serial.grads[0] - vector.grads[0]).abs().max() < 1e-5 * scale
        for ws in (serial, vector):
            ws.optimizer_step()
    # three steps at lr 0.1 with momentum amplify that round-off, but only that
    for a, b in zip(serial.params + serial.buffers, vector.params + vector.buffers):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
    assert not torch.equal(vector.params[0][0], vector.params[0][1])  # workers saw different data


def test_auto_stays_serial_on_cpu_and_vectorizes_on_gpu():
    assert choose("auto", torch.device("cpu"), 8) is False
    assert choose("auto", torch.device("cuda"), 8) is True
    assert choose("on", torch.device("cpu"), 8) is True
    assert choose("on", torch.device("cpu"), 1) is True
    assert choose("auto", torch.device("cuda"), 1) is False


class DataDependent(torch.nn.Module):
    """Control flow on tensor values: vmap cannot batch it."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(784, 10)

    def forward(self, x):
        out = self.fc(x.flatten(1))
        return out if out.sum() > 0 else -out


def test_unbatchable_model_falls_back_to_serial_with_a_message(capsys):
    ws = make_workers(DataDependent(), 2, 0, OPT, torch.device("cpu"), "on", probe=batches(1)(0))
    assert type(ws) is WorkerSet
    assert "cannot vectorize DataDependent" in capsys.readouterr().err

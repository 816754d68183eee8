"""Mixing in one process equals the dense numpy product W @ X; buckets keep parameters in place."""
import numpy as np
import pytest
import torch

from dsgd.comm import BucketLayout, Mixer, SelfCommunicator, SimulatedMixer, bind_, bind_grads_


def random_doubly_stochastic(n, seed, density=0.5):
    rng = np.random.default_rng(seed)
    A = rng.random((n, n)) * (rng.random((n, n)) < density) + np.eye(n)
    for _ in range(500):  # Sinkhorn balancing
        A /= A.sum(1, keepdims=True)
        A /= A.sum(0, keepdims=True)
    return A


def matrices(n):
    ring = np.zeros((n, n))
    for i in range(n):
        ring[i, i] = ring[i, (i + 1) % n] = ring[i, (i - 1) % n] = 1 / 3
    return {"identity": np.eye(n), "average": np.full((n, n), 1 / n), "ring": ring,
            "random": random_doubly_stochastic(n, seed=n)}


@pytest.mark.parametrize("name", ["identity", "average", "ring", "random"])
@pytest.mark.parametrize("mixer_kind", ["simulated", "self"])
def test_mixing_equals_dense_reference(name, mixer_kind):
    n, m = 6, 1000
    W = matrices(n)[name]
    X = np.random.default_rng(0).standard_normal((n, m)).astype(np.float32)
    mixer = SimulatedMixer(n) if mixer_kind == "simulated" else Mixer(SelfCommunicator(), workers_per_rank=n)
    buffers = [torch.from_numpy(X[:, :700].copy()), torch.from_numpy(X[:, 700:].copy()).double()]
    mixer.mix_(buffers, W)
    expected = W @ X.astype(np.float64)
    np.testing.assert_allclose(buffers[0].numpy(), expected[:, :700], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(buffers[1].numpy(), expected[:, 700:], rtol=1e-12, atol=1e-12)


def test_identity_step_moves_nothing_and_average_is_not_destructive():
    mixer = Mixer(SelfCommunicator(), workers_per_rank=4)
    X = torch.randn(4, 10)
    before = X.clone()
    mixer.mix_([X], np.eye(4))
    assert torch.equal(X, before)
    assert mixer.worker_bytes_sent.sum() == 0
    avg = mixer.average([X])[0]
    assert torch.equal(X, before)
    torch.testing.assert_close(avg, before.mean(0))


def test_nonblocking_mix_finishes_on_wait():
    mixer = Mixer(SelfCommunicator(), workers_per_rank=3)
    W = random_doubly_stochastic(3, seed=1)
    X = torch.randn(3, 50, dtype=torch.float64)
    expected = torch.from_numpy(W) @ X
    pending = mixer.start([X], W)
    pending.wait()
    torch.testing.assert_close(X, expected)


def test_bound_parameters_stay_the_same_objects_and_follow_the_buffer():
    models = [torch.nn.Linear(3, 2) for _ in range(2)]
    params = [list(m.parameters()) for m in models]
    layout = BucketLayout(params[0])
    buffers = layout.allocate(2)
    ids = [[id(p) for p in ps] for ps in params]
    for k in range(2):
        bind_(layout, buffers, k, params[k])
    assert [[id(p) for p in m.parameters()] for m in models] == ids
    assert buffers[0].shape == (2, 3 * 2 + 2)
    buffers[0][1].fill_(7.0)
    assert torch.all(models[1].weight == 7.0) and not torch.any(models[0].weight == 7.0)
    grads = layout.allocate(2)
    bind_grads_(layout, grads, 0, params[0])
    models[0](torch.ones(4, 3)).sum().backward()
    assert grads[0][0].abs().sum() > 0 and grads[0][1].abs().sum() == 0


def test_buckets_split_by_cap_and_by_dtype():
    tensors = [torch.zeros(100), torch.zeros(100), torch.zeros(10, dtype=torch.float64)]
    layout = BucketLayout(tensors, cap_bytes=500)
    assert layout.bucket_numel == [100, 100, 10]
    assert BucketLayout(tensors).bucket_numel == [200, 10]

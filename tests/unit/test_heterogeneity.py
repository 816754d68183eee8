"""zeta2 and the workers' own test accuracies, against a numpy closed form for softmax regression."""
import numpy as np
import torch

from dsgd.comm.simulated import SimulatedMixer
from dsgd.data.datasets import Dataset
from dsgd.train.heterogeneity import Heterogeneity, probe_indices

CLASSES, MEAN, STD = 3, (0.5,), (0.25,)


def _dataset(n, seed):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 2, 2), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    return Dataset("synthetic", images, labels, CLASSES, MEAN, STD)


def _model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, CLASSES))


def _inputs(ds):
    """The normalisation written out again: (pixel / 255 - mean) / std, flattened, float64."""
    return (ds.images.numpy().reshape(len(ds), -1).astype(np.float64) / 255.0 - MEAN[0]) / STD[0]


def _reference_gradient(model, X, y):
    """d/dW, d/db of the mean cross-entropy of softmax(X W^T + b): (P - onehot)^T X / m, mean(P - onehot)."""
    W = model[1].weight.detach().double().numpy()
    b = model[1].bias.detach().double().numpy()
    z = X @ W.T + b
    P = np.exp(z - z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    G = P - np.eye(CLASSES)[y]
    return np.concatenate([(G.T @ X / len(y)).ravel(), G.mean(axis=0)])


def _zeta2_reference(model, ds, parts):
    X, y = _inputs(ds), ds.labels.numpy()
    g = np.stack([_reference_gradient(model, X[p], y[p]) for p in parts])
    return float(((g - g.mean(axis=0)) ** 2).sum(axis=1).mean())


def _het(ds, parts, samples=10_000):
    return Heterogeneity(ds, parts, range(len(parts)), samples, seed=0, device="cpu")


def test_zeta2_is_zero_for_workers_with_the_same_data():
    ds = _dataset(60, seed=1)
    same = [np.arange(60)] * 4  # probes cover the whole part: the same samples, in other orders
    zeta2 = _het(ds, same).zeta2(_model(0), SimulatedMixer(4))
    assert 0 <= zeta2 < 1e-10


def test_zeta2_of_a_label_sorted_split_matches_the_closed_form():
    ds = _dataset(90, seed=2)
    parts = np.array_split(np.argsort(ds.labels.numpy(), kind="stable"), 3)  # one class per worker
    model = _model(1)
    zeta2 = _het(ds, parts).zeta2(model, SimulatedMixer(3))
    expected = _zeta2_reference(model, ds, parts)
    assert expected > 0.01
    assert abs(zeta2 - expected) <= 1e-5 * expected


def test_probe_batches_are_fixed_samples_of_each_workers_part():
    ds = _dataset(200, seed=3)
    parts = [np.arange(0, 50), np.arange(50, 200)]
    h = _het(ds, parts, samples=32)
    for w, part in enumerate(parts):
        idx = probe_indices(torch.as_tensor(part), 32, 0, w).numpy()
        assert len(np.unique(idx)) == 32 and np.isin(idx, part).all()
        assert np.array_equal(idx, probe_indices(torch.as_tensor(part), 32, 0, w).numpy())  # same every time
        assert torch.equal(h.probes[w][1], ds.labels[idx])
    small = _het(ds, [np.arange(5), np.arange(5, 200)], samples=32)
    assert len(small.probes[0][1]) == 5  # a part smaller than the probe: all of it


def test_a_probe_subset_gives_the_closed_form_on_that_subset():
    ds = _dataset(300, seed=4)
    parts = [np.arange(0, 150), np.arange(150, 300)]
    model = _model(2)
    zeta2 = _het(ds, parts, samples=40).zeta2(model, SimulatedMixer(2))
    probes = [probe_indices(torch.as_tensor(p), 40, 0, w).numpy() for w, p in enumerate(parts)]
    expected = _zeta2_reference(model, ds, probes)
    assert abs(zeta2 - expected) <= 1e-5 * expected


def test_local_accuracies_are_each_workers_own_model_on_the_eval_subset():
    train, test = _dataset(30, seed=5), _dataset(500, seed=6)
    models = [_model(s) for s in (10, 11, 12)]
    h = _het(train, [np.arange(10), np.arange(10, 20), np.arange(20, 30)])
    row = h.measure(_model(0), models, test, SimulatedMixer(3), first_worker=0, device="cpu", eval_samples=200)
    X, y = _inputs(test)[:200], test.labels.numpy()[:200]
    acc = [float(((X @ m[1].weight.detach().double().numpy().T + m[1].bias.detach().double().numpy())
                  .argmax(axis=1) == y).mean()) for m in models]
    assert len(set(acc)) > 1  # the three models do differ
    assert abs(row["local_test_acc_mean"] - np.mean(acc)) < 1e-12
    assert row["local_test_acc_min"] == min(acc)
    assert row["zeta2"] >= 0


def test_identical_workers_have_mean_equal_to_min_exactly():
    # three equal ratios averaged as ratios can land one ulp under their minimum; counts do not
    train, test = _dataset(30, seed=5), _dataset(300, seed=7)
    model = _model(3)
    h = _het(train, [np.arange(10), np.arange(10, 20), np.arange(20, 30)])
    for samples in range(250, 300, 7):
        row = h.measure(model, [model] * 3, test, SimulatedMixer(3), 0, "cpu", samples)
        assert row["local_test_acc_min"] == row["local_test_acc_mean"]


def test_measuring_leaves_models_gradients_and_random_state_as_they_were():
    train, test = _dataset(40, seed=8), _dataset(100, seed=9)
    torch.manual_seed(4)
    models = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6),
                                  torch.nn.Linear(6, CLASSES)) for _ in range(2)]
    for m in models:  # some training-mode statistics and a gradient to keep
        m.train()
        m(torch.randn(8, 1, 2, 2)).sum().backward()
    avg = models[0]
    before = [[t.detach().clone() for t in (*m.parameters(), *m.buffers(), *(p.grad for p in m.parameters()))]
              for m in models]
    rng = torch.get_rng_state()
    h = _het(train, [np.arange(20), np.arange(20, 40)])
    h.measure(avg, models, test, SimulatedMixer(2), 0, "cpu", 0)
    after = [[*m.parameters(), *m.buffers(), *(p.grad for p in m.parameters())] for m in models]
    assert all(torch.equal(a, b) for x, y in zip(before, after) for a, b in zip(x, y))
    assert torch.equal(torch.get_rng_state(), rng)

"""dsgd.data.datasets and dsgd.data.batches: registry, normalisation, pure local batches."""
import pytest
import torch

from dsgd.data import (DATASETS, Augmentation, Dataset, eval_batches, load_dataset,
                       local_batch, make_sampler, shard_range, to_float)


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", n_samples=600, image_shape=(3, 8, 8), num_classes=5, seed=1)


def test_registry_names():
    assert set(DATASETS) == {"fashion-mnist", "cifar10", "synthetic", "fortunes"}
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="takes no options"):
        load_dataset("fashion-mnist", n_samples=10)


def test_synthetic_is_deterministic_and_shaped(ds):
    again = load_dataset("synthetic", n_samples=600, image_shape=(3, 8, 8), num_classes=5, seed=1)
    assert torch.equal(ds.images, again.images) and torch.equal(ds.labels, again.labels)
    assert ds.images.shape == (600, 3, 8, 8) and ds.num_classes == 5
    assert torch.equal(torch.bincount(ds.labels), torch.full((5,), 120))
    test = load_dataset("synthetic", train=False, n_samples=600, image_shape=(3, 8, 8),
                        num_classes=5, seed=1)
    assert not torch.equal(ds.images, test.images)


def test_synthetic_classes_are_separable(ds):
    # Nearest class mean on the raw pixels should beat chance (20%) by far.
    x = ds.images.flatten(1).float()
    means = torch.stack([x[ds.labels == k].mean(0) for k in range(5)])
    accuracy = (torch.cdist(x, means).argmin(1) == ds.labels).float().mean()
    assert accuracy > 0.9


def test_dataset_checks_its_fields():
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        Dataset("x", images.float(), torch.zeros(4, dtype=torch.int64), 2, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="labels"):
        Dataset("x", images, torch.zeros(3, dtype=torch.int64), 2, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="per image channel"):
        Dataset("x", images, torch.zeros(4, dtype=torch.int64), 2, (0.5, 0.5), (0.5, 0.5))


def test_to_float_normalises_per_channel():
    images = torch.tensor([0, 255], dtype=torch.uint8).view(1, 2, 1, 1).expand(3, 2, 2, 2)
    x = to_float(images, mean=(0.5, 0.25), std=(0.5, 0.25))
    assert x.dtype == torch.float32 and x.shape == (3, 2, 2, 2)
    assert torch.allclose(x[:, 0], torch.tensor(-1.0))
    assert torch.allclose(x[:, 1], torch.tensor(3.0))


def test_local_batch_shapes_and_purity(ds):
    sampler = make_sampler(False, len(ds), 4, 8, seed=3)
    x, y = local_batch(ds, sampler, worker=2, step=17, seed=3)
    assert x.shape == (8, 3, 8, 8) and x.dtype == torch.float32
    assert y.shape == (8,) and y.dtype == torch.int64
    assert torch.equal(y, ds.labels[sampler.indices(2, 17)])
    # A fresh sampler (another process, or after a resume) gives the same batch.
    again = local_batch(ds, make_sampler(False, len(ds), 4, 8, seed=3), 2, 17, seed=3)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])


@pytest.mark.parametrize("replacement", [False, True])
def test_resume_from_the_step_number_alone(ds, replacement):
    kw = dict(seed=9, augment=Augmentation(padding=2), label_noise_p=0.3)
    sampler = make_sampler(replacement, len(ds), 3, 8, seed=9)
    history = [local_batch(ds, sampler, 1, step, **kw) for step in range(40)]
    resumed = make_sampler(replacement, len(ds), 3, 8, seed=9)
    for step in (39, 25, 24):
        x, y = local_batch(ds, resumed, 1, step, **kw)
        assert torch.equal(x, history[step][0]) and torch.equal(y, history[step][1])


def test_augmentation_and_noise_change_the_batch_but_not_the_indices(ds):
    sampler = make_sampler(True, len(ds), 2, 32, seed=0)
    plain_x, plain_y = local_batch(ds, sampler, 0, 5, seed=0)
    aug_x, aug_y = local_batch(ds, sampler, 0, 5, seed=0, augment=Augmentation())
    noisy_x, noisy_y = local_batch(ds, sampler, 0, 5, seed=0, label_noise_p=1.0)
    assert not torch.equal(plain_x, aug_x) and torch.equal(plain_y, aug_y)
    assert torch.equal(plain_x, noisy_x) and bool((noisy_y != plain_y).all())


def test_augment_true_uses_the_dataset_default(ds):
    sampler = make_sampler(True, len(ds), 2, 8, seed=0)
    # The synthetic default is no augmentation.
    assert torch.equal(local_batch(ds, sampler, 0, 0, 0, augment=True)[0],
                       local_batch(ds, sampler, 0, 0, 0, augment=False)[0])


@pytest.mark.parametrize("n", [0, 1, 7, 10, 100])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shard_range_tiles_in_rank_order(n, size):
    shards = [shard_range(n, r, size) for r in range(size)]
    assert [i for s in shards for i in s] == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_range_rejects_bad_ranks():
    with pytest.raises(ValueError, match="rank"):
        shard_range(10, 3, 3)


def test_eval_batches_walk_the_set_in_order(ds):
    ys = [y for _, y in eval_batches(ds, 64)]
    assert [len(y) for y in ys] == [64] * 9 + [24]
    assert torch.equal(torch.cat(ys), ds.labels)
    part = shard_range(len(ds), 1, 4)
    xs = torch.cat([x for x, _ in eval_batches(ds, 50, items=part)])
    assert torch.equal(xs, to_float(ds.images[part.start:part.stop], ds.mean, ds.std))

"""dsgd.data.partition: label-skewed splits, checked with plain numpy set arithmetic and counting."""
import numpy as np
import pytest

from dsgd.data.partition import PartitionSpec, class_histogram, parse_partition, split

C = 10


def _labels(n_samples, seed=0, classes=C):
    """Balanced labels in a shuffled order (as a real training set has them)."""
    return np.random.default_rng(seed).permutation(np.arange(n_samples) % classes)


def _parts(spec, labels, n, seed=0, classes=C):
    return split(labels, n, parse_partition(spec), seed, classes)


def _assert_exact(parts, n_samples, n):
    """Disjoint, complete, none empty: an independent count of every index."""
    assert len(parts) == n
    assert all(len(p) > 0 for p in parts)
    seen = np.zeros(n_samples, dtype=np.int64)
    for p in parts:
        assert p.dtype.kind == "i"
        np.add.at(seen, p, 1)
    assert (seen == 1).all()  # each sample on exactly one worker


@pytest.mark.parametrize("spec, parsed", [
    ("iid", PartitionSpec("iid")),
    ("sorted", PartitionSpec("sorted")),
    ("dirichlet:alpha=0.1", PartitionSpec("dirichlet", alpha=0.1)),
    (" dirichlet: alpha = 2 ", PartitionSpec("dirichlet", alpha=2.0)),
    ("shards:k=2", PartitionSpec("shards", k=2)),
])
def test_specs_parse(spec, parsed):
    assert parse_partition(spec) == parsed
    assert parse_partition(str(parsed)) == parsed  # str() is a spec again


@pytest.mark.parametrize("spec, message", [
    ("zebra", "unknown partition 'zebra' (known: iid, dirichlet:alpha=A, shards:k=K, sorted)"),
    ("dirichlet", "partition dirichlet needs alpha=..."),
    ("dirichlet:alpha=0", "dirichlet alpha must be > 0"),
    ("dirichlet:alpha=-1", "dirichlet alpha must be > 0"),
    ("dirichlet:alpha=inf", "dirichlet alpha must be > 0 (and finite)"),
    ("dirichlet:alpha=lots", "dirichlet alpha must be a number, got 'lots'"),
    ("shards:k=0", "shards k must be >= 1, got 0"),
    ("shards:k=1.5", "shards k must be an integer, got '1.5'"),
    ("shards:alpha=1", "partition shards takes no option 'alpha'"),
    ("sorted:k=2", "partition sorted takes no option 'k'"),
    ("shards:k", "bad option 'k' in partition spec 'shards:k' (expected key=value)"),
    ("dirichlet:alpha=0.1,alpha=0.2", "option 'alpha' given twice in partition spec 'dirichlet:alpha=0.1,alpha=0.2'"),
])
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_partition(spec)


@pytest.mark.parametrize("spec", ["dirichlet:alpha=0.1", "dirichlet:alpha=5", "shards:k=1", "shards:k=3", "sorted"])
@pytest.mark.parametrize("n_samples, n", [(1000, 7), (60, 60), (999, 1)])
def test_every_sample_is_on_exactly_one_worker(spec, n_samples, n):
    if spec == "shards:k=3" and n_samples < 3 * n:
        pytest.skip("fewer samples than shards: refused, tested below")
    parts = _parts(spec, _labels(n_samples), n)
    _assert_exact(parts, n_samples, n)


@pytest.mark.parametrize("spec", ["dirichlet:alpha=0.3", "shards:k=2", "sorted"])
def test_same_seed_same_parts(spec):
    labels = _labels(500)
    a, b = _parts(spec, labels, 6, seed=3), _parts(spec, labels, 6, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("spec", ["dirichlet:alpha=0.3", "shards:k=2"])
def test_another_seed_other_parts(spec):
    labels = _labels(500)
    a, b = _parts(spec, labels, 6, seed=3), _parts(spec, labels, 6, seed=4)
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))


def test_sorted_does_not_depend_on_the_seed_and_cuts_label_order_contiguously():
    labels = _labels(1003)
    parts = _parts("sorted", labels, 7, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(parts, _parts("sorted", labels, 7, seed=99)))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 1003
    for lo, hi in zip(parts, parts[1:]):  # label ranges follow each other
        assert labels[lo].max() <= labels[hi].min()
    # 10 balanced classes over 7 workers: a worker holds 143-144 samples, so at most 3 classes
    assert max(len(np.unique(labels[p])) for p in parts) <= 3


def test_dirichlet_with_large_alpha_is_close_to_uniform():
    # Dir(1000 * 1) shares have sd ~ 0.0057 around 1/5; a worker's class proportion then moves
    # about 0.003 around 0.1. 0.03 is ~10 sd (the largest seen over 100 seeds was 0.0103).
    labels = _labels(10_000)
    hist = class_histogram(labels, _parts("dirichlet:alpha=1000", labels, 5), C)
    props = hist / hist.sum(axis=1, keepdims=True)
    assert np.abs(props - 1 / C).max() < 0.03


def test_dirichlet_with_small_alpha_gives_workers_a_dominant_class():
    # 20 workers, alpha 0.1: over 500 seeds, 9..20 workers (mean 14.9, sd ~2) had one class above
    # half their part, and the mean dominant share was 0.52..0.78 (mean 0.64, sd 0.044). The bounds
    # below sit more than 3 sd under those; uniform parts would give 0 workers and a share of 0.1.
    labels = _labels(10_000)
    hist = class_histogram(labels, _parts("dirichlet:alpha=0.1", labels, 20), C)
    dominant = hist.max(axis=1) / hist.sum(axis=1)
    assert (dominant > 0.5).sum() >= 8
    assert dominant.mean() > 0.45


def test_dirichlet_never_leaves_a_worker_empty():
    # 30 samples, 25 workers, alpha 0.01: nearly every class lands on one worker, so most of the
    # raw draw's workers are empty; each then takes one sample from the largest part.
    labels = _labels(30)
    for seed in range(5):
        parts = _parts("dirichlet:alpha=0.01", labels, 25, seed=seed)
        _assert_exact(parts, 30, 25)
        assert sum(len(p) == 1 for p in parts) >= 10  # the repair ran: many hold one moved sample


def test_shards_aligned_with_classes_give_each_worker_at_most_k_classes():
    # 1000 samples, 100 per class, 10 workers x k=2: 20 shards of 50, each inside one class
    labels = _labels(1000)
    parts = _parts("shards:k=2", labels, 10)
    classes = [len(np.unique(labels[p])) for p in parts]
    assert max(classes) <= 2
    assert all(len(p) == 100 for p in parts)


def test_shards_that_straddle_classes_obey_the_boundary_bound():
    # Unequal classes, shards not aligned with them. In label order each shard is a contiguous run;
    # it touches 1 + (class boundaries strictly inside it) classes, and there are C - 1 boundaries
    # in all. So a worker has at most k + (boundaries inside its shards) classes, all workers
    # together at most n k + C - 1, and, when no class is smaller than a shard, at most 2k each.
    rng = np.random.default_rng(1)
    sizes = rng.integers(60, 140, size=C)
    labels = rng.permutation(np.repeat(np.arange(C), sizes))
    N, n, k = len(labels), 7, 3
    parts = _parts("shards:k=3", labels, n, seed=2)
    _assert_exact(parts, N, n)
    shard = -(-N // (n * k))  # the largest shard
    assert sizes.min() >= shard
    # independent shard ids: position of each sample in the stable label order, then its run
    position = np.empty(N, dtype=np.int64)
    position[np.argsort(labels, kind="stable")] = np.arange(N)
    edges = np.cumsum([N // (n * k) + (j < N % (n * k)) for j in range(n * k)])
    shard_of = np.searchsorted(edges, position, side="right")
    sorted_labels = np.sort(labels)
    inner = [int((np.diff(sorted_labels[lo:hi]) != 0).sum()) for lo, hi in zip(np.r_[0, edges[:-1]], edges)]
    total = 0
    for p in parts:
        mine = np.unique(shard_of[p])
        assert len(mine) == k  # exactly k shards ...
        assert sum((shard_of == s).sum() for s in mine) == len(p)  # ... each one whole
        n_classes = len(np.unique(labels[p]))
        assert n_classes <= k + sum(inner[s] for s in mine)
        assert n_classes <= 2 * k
        total += n_classes
    assert total <= n * k + C - 1


def test_refused_partitions_say_why():
    labels = _labels(100)
    with pytest.raises(ValueError, match="shards k=11 is more than the 10 classes"):
        _parts("shards:k=11", labels, 2)
    with pytest.raises(ValueError, match="60 workers x k=2 shards = 120 shards but only 100 samples"):
        _parts("shards:k=2", labels, 60)
    for spec in ("sorted", "dirichlet:alpha=1"):
        with pytest.raises(ValueError, match="100 samples leave some of the 101 workers empty"):
            _parts(spec, labels, 101)
    with pytest.raises(ValueError, match="iid has no fixed parts"):
        _parts("iid", labels, 2)


def test_class_histogram_counts_each_workers_labels():
    labels = np.array([0, 1, 1, 2, 2, 2, 0])
    parts = [np.array([0, 1, 2]), np.array([3, 4, 5, 6])]
    expected = [[sum(labels[i] == c for i in p) for c in range(4)] for p in parts]
    assert class_histogram(labels, parts, 4).tolist() == expected == [[1, 2, 0, 0], [1, 0, 3, 0]]

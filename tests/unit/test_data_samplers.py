"""dsgd.data.samplers: Gu et al. 2023, Algorithm 2 (without) and Algorithm 1 (with replacement)."""
import pytest
import torch

from dsgd.data.samplers import WithoutReplacementSampler, WithReplacementSampler, make_sampler

N, WORKERS, BATCH, SEED = 1000, 3, 16, 5  # 1000 // 48 = 20 steps per epoch


def _epoch(sampler, epoch):
    """indices[worker, in-epoch step, position] over one whole epoch."""
    spe = sampler.steps_per_epoch
    return torch.stack([torch.stack([sampler.indices(w, epoch * spe + s) for s in range(spe)])
                        for w in range(sampler.n_workers)])


def test_without_replacement_default_epoch_length():
    assert WithoutReplacementSampler(N, WORKERS, BATCH, SEED).steps_per_epoch == 20


def test_without_replacement_shards_are_disjoint_and_cover_the_epoch():
    s = WithoutReplacementSampler(N, WORKERS, BATCH, SEED)
    idx = _epoch(s, 0)
    assert idx.shape == (WORKERS, 20, BATCH) and idx.dtype == torch.int64
    assert idx.unique().numel() == WORKERS * BATCH * 20  # no index twice, within or across workers
    assert idx.min() >= 0 and idx.max() < N


def test_without_replacement_walks_one_global_permutation_in_contiguous_shards():
    s = WithoutReplacementSampler(N, WORKERS, BATCH, SEED)
    perm = s.permutation(0).clone()
    shard = N // WORKERS
    for w in range(WORKERS):
        walked = _epoch(s, 0)[w].flatten()
        assert torch.equal(walked, perm[w * shard:w * shard + 20 * BATCH])


def test_without_replacement_recomputes_identically_in_any_order():
    walked = WithoutReplacementSampler(N, WORKERS, BATCH, SEED)
    steps = [0, 1, 19, 20, 21, 45, 3, 100, 20]  # jumps back across epochs too
    for step in steps:
        for w in range(WORKERS):
            fresh = WithoutReplacementSampler(N, WORKERS, BATCH, SEED)
            assert torch.equal(walked.indices(w, step), fresh.indices(w, step))


def test_without_replacement_returned_indices_do_not_alias_the_cache():
    s = WithoutReplacementSampler(N, WORKERS, BATCH, SEED)
    s.indices(0, 0).fill_(-1)
    assert s.indices(0, 0).min() >= 0


def test_without_replacement_reshuffles_each_epoch():
    s = WithoutReplacementSampler(N, WORKERS, BATCH, SEED)
    assert not torch.equal(_epoch(s, 0), _epoch(s, 1))
    assert not torch.equal(s.permutation(1), s.permutation(2))


def test_without_replacement_depends_on_the_seed():
    a = WithoutReplacementSampler(N, WORKERS, BATCH, 0).indices(0, 0)
    b = WithoutReplacementSampler(N, WORKERS, BATCH, 1).indices(0, 0)
    assert not torch.equal(a, b)


def test_fixed_steps_per_epoch_shortens_the_epoch():
    s = WithoutReplacementSampler(N, WORKERS, BATCH, SEED, steps_per_epoch=12)
    idx = _epoch(s, 0)
    assert idx.shape == (WORKERS, 12, BATCH)
    assert idx.unique().numel() == WORKERS * BATCH * 12
    # Step 12 starts epoch 1: the head of a new permutation's shard.
    assert torch.equal(s.indices(1, 12), s.permutation(1)[N // WORKERS:][:BATCH])


def test_steps_per_epoch_beyond_the_data_is_refused():
    with pytest.raises(ValueError, match="steps_per_epoch=21 must be in 1..20"):
        WithoutReplacementSampler(N, WORKERS, BATCH, SEED, steps_per_epoch=21)
    with pytest.raises(ValueError, match="steps_per_epoch=0"):
        WithoutReplacementSampler(N, WORKERS, BATCH, SEED, steps_per_epoch=0)


def test_too_little_data_for_one_step_is_refused():
    with pytest.raises(ValueError, match="cannot fill one step"):
        WithoutReplacementSampler(40, WORKERS, BATCH, SEED)


@pytest.mark.parametrize("cls", [WithoutReplacementSampler, WithReplacementSampler])
def test_bad_sizes_and_queries(cls):
    with pytest.raises(ValueError, match="local_batch"):
        cls(N, WORKERS, 0, SEED)
    s = cls(N, WORKERS, BATCH, SEED)
    with pytest.raises(ValueError, match="worker"):
        s.indices(WORKERS, 0)
    with pytest.raises(ValueError, match="step"):
        s.indices(0, -1)


def test_with_replacement_is_deterministic_per_seed_worker_step():
    a = WithReplacementSampler(N, WORKERS, BATCH, SEED)
    b = WithReplacementSampler(N, WORKERS, BATCH, SEED)
    for w, step in [(0, 0), (2, 7), (1, 10_000)]:
        assert torch.equal(a.indices(w, step), b.indices(w, step))
    assert a.indices(0, 0).shape == (BATCH,) and a.indices(0, 0).dtype == torch.int64


def test_with_replacement_workers_and_steps_draw_independently():
    s = WithReplacementSampler(N, WORKERS, BATCH, SEED)
    draws = [s.indices(w, step) for w in range(WORKERS) for step in range(5)]
    for i in range(len(draws)):
        for j in range(i):
            assert not torch.equal(draws[i], draws[j])


def test_with_replacement_draws_uniformly_from_the_whole_set():
    s = WithReplacementSampler(100, 2, 50, SEED)
    counts = torch.bincount(torch.cat([s.indices(w, t) for w in range(2) for t in range(200)]),
                            minlength=100)
    # 20000 draws over 100 items: each count ~ 200 +- 14; 100 +- 7 sigma is a safe band.
    assert counts.min() > 100 and counts.max() < 300


def test_with_replacement_steps_per_epoch():
    assert WithReplacementSampler(N, WORKERS, BATCH, SEED).steps_per_epoch == 20
    assert WithReplacementSampler(N, WORKERS, BATCH, SEED, steps_per_epoch=50).steps_per_epoch == 50
    assert WithReplacementSampler(10, WORKERS, BATCH, SEED).steps_per_epoch == 1
    with pytest.raises(ValueError, match="steps_per_epoch"):
        WithReplacementSampler(N, WORKERS, BATCH, SEED, steps_per_epoch=0)


def test_make_sampler_picks_the_scheme():
    assert isinstance(make_sampler(True, N, WORKERS, BATCH, SEED), WithReplacementSampler)
    s = make_sampler(False, N, WORKERS, BATCH, SEED, steps_per_epoch=12)
    assert isinstance(s, WithoutReplacementSampler) and s.steps_per_epoch == 12

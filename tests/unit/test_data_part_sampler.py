"""dsgd.data.samplers.PartSampler: each worker samples its own fixed part, with or without replacement."""
import numpy as np
import pytest
import torch

from dsgd.data.samplers import PartSampler, WithoutReplacementSampler, make_sampler

PARTS = [np.arange(0, 10), np.arange(10, 13), np.arange(13, 40)]  # unequal sizes, 40 samples
B, SEED = 4, 7


def _stream(s, worker, steps):
    return torch.cat([s.indices(worker, t) for t in range(steps)]).numpy()


def test_without_replacement_walks_whole_passes_and_reshuffles_each():
    s = PartSampler(PARTS, B, SEED, replacement=False)
    for w, part in enumerate(PARTS):
        m = len(part)
        steps = m  # m steps of B = 4: exactly 4 m positions, 4 whole passes
        walked = _stream(s, w, steps)
        passes = walked.reshape(4, m)
        for p in passes:  # each pass: every sample of the part exactly once
            assert np.array_equal(np.sort(p), part)
        if m > 3:
            assert len({tuple(p) for p in passes}) > 1  # reshuffled between passes


def test_a_part_smaller_than_the_batch_still_fills_it_from_consecutive_passes():
    s = PartSampler([np.array([5, 6]), np.arange(0, 5), np.arange(7, 10)], 5, SEED, replacement=False)
    batch = s.indices(0, 0).numpy()
    assert len(batch) == 5 and set(batch) == {5, 6}
    assert sorted(batch[:4]) == [5, 5, 6, 6]  # two whole passes, then the start of the third


def test_with_replacement_draws_only_from_the_part_and_independently():
    s = PartSampler(PARTS, 64, SEED, replacement=True)
    for w, part in enumerate(PARTS):
        idx = s.indices(w, 5).numpy()
        assert np.isin(idx, part).all() and len(idx) == 64
        assert len(np.unique(idx)) < 64 or len(part) >= 64  # repeats happen: 64 draws from <= 27
    assert not torch.equal(s.indices(2, 0), s.indices(2, 1))


@pytest.mark.parametrize("replacement", [False, True])
def test_batches_are_a_pure_function_of_seed_worker_step(replacement):
    walked = PartSampler(PARTS, B, SEED, replacement)
    order = [0, 1, 2, 9, 3, 30, 2, 0, 31]
    for step in order:
        for w in range(3):
            fresh = PartSampler(PARTS, B, SEED, replacement)
            assert torch.equal(walked.indices(w, step), fresh.indices(w, step))
    other = PartSampler(PARTS, B, SEED + 1, replacement)
    assert not all(torch.equal(walked.indices(2, t), other.indices(2, t)) for t in range(4))


def test_steps_per_epoch_is_the_mean_part_size_over_the_local_batch():
    # 40 samples over 3 workers: mean part 13.3, over B = 4: 3 steps (one pass over the data in total)
    assert PartSampler(PARTS, B, SEED, False).steps_per_epoch == 40 // (3 * B) == 3
    assert PartSampler(PARTS, B, SEED, False, steps_per_epoch=11).steps_per_epoch == 11


def test_make_sampler_without_parts_is_the_iid_sampler_and_with_parts_checks_them():
    iid = make_sampler(False, 40, 3, B, SEED, None)
    ref = WithoutReplacementSampler(40, 3, B, SEED)
    assert isinstance(iid, WithoutReplacementSampler)
    assert all(torch.equal(iid.indices(w, t), ref.indices(w, t)) for w in range(3) for t in range(6))
    assert isinstance(make_sampler(True, 40, 3, B, SEED, parts=PARTS), PartSampler)
    with pytest.raises(ValueError, match="parts must be 3 arrays covering 41 samples"):
        make_sampler(True, 41, 3, B, SEED, parts=PARTS)
    with pytest.raises(ValueError, match="at least one sample"):
        PartSampler([np.arange(3), np.array([], dtype=np.int64)], B, SEED, False)

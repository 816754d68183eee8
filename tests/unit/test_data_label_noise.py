"""dsgd.data.label_noise: each label flips to another class with probability p."""
import pytest
import torch

from dsgd.data.label_noise import corrupt_labels


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_corrupts_about_p_and_never_keeps_a_corrupted_label():
    labels = torch.randint(0, 10, (200_000,), generator=_gen(1))
    noisy = corrupt_labels(labels, 10, 0.3, _gen(2))
    # A corrupted label always differs, so "changed" is exactly "corrupted".
    # Std of the fraction is sqrt(0.21 / 200000) ~ 0.001; allow 10 sigma.
    assert (noisy != labels).double().mean().item() == pytest.approx(0.3, abs=0.01)
    assert noisy.min() >= 0 and noisy.max() < 10 and noisy.dtype == torch.int64


def test_p_one_changes_every_label_uniformly_over_the_other_classes():
    labels = torch.full((90_000,), 4)
    noisy = corrupt_labels(labels, 10, 1.0, _gen())
    counts = torch.bincount(noisy, minlength=10)
    assert counts[4] == 0
    # 10000 expected per other class, std ~ 94.
    others = torch.cat([counts[:4], counts[5:]]).double()
    assert (others - 10_000).abs().max() < 600


def test_p_zero_is_the_identity_and_input_is_untouched():
    labels = torch.arange(10)
    assert torch.equal(corrupt_labels(labels, 10, 0.0, _gen()), labels)
    corrupt_labels(labels, 10, 1.0, _gen())
    assert torch.equal(labels, torch.arange(10))


def test_fresh_draw_per_generator_and_reproducible_per_seed():
    labels = torch.zeros(1000, dtype=torch.int64)
    a, b, c = (corrupt_labels(labels, 10, 0.5, _gen(s)) for s in (0, 0, 1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_two_classes_swap():
    labels = torch.tensor([0, 1, 0, 1])
    assert corrupt_labels(labels, 2, 1.0, _gen()).tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize("p, classes, match", [(-0.1, 10, "p must"), (1.5, 10, "p must"),
                                               (0.1, 1, "num_classes")])
def test_invalid_arguments(p, classes, match):
    with pytest.raises(ValueError, match=match):
        corrupt_labels(torch.zeros(3, dtype=torch.int64), classes, p, _gen())

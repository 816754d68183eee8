"""dsgd.models: every model builds for both dataset shapes, with the expected sizes."""
import pytest
import torch
import torch.nn as nn

from dsgd.models import MODELS, build_model

SHAPES = [(1, 28, 10), (3, 32, 10)]  # (channels, image size, classes): Fashion-MNIST, CIFAR-10


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("shape", SHAPES, ids=["fmnist", "cifar"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_shape(name, shape):
    channels, size, classes = shape
    torch.manual_seed(0)
    model = build_model(name, channels, classes, size)
    out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, classes) and torch.isfinite(out).all()


@pytest.mark.parametrize("norm", ["bn", "gn", "none"])
@pytest.mark.parametrize("name", ["cnn", "mlp", "resnet20"])
def test_norm_choice_and_backward(name, norm):
    model = build_model(name, 1, 10, 28, norm=norm, n_groups=4 if norm == "gn" else None)
    kinds = {type(m) for m in model.modules()}
    assert (nn.BatchNorm2d in kinds or nn.BatchNorm1d in kinds) == (norm == "bn")
    assert (nn.GroupNorm in kinds) == (norm == "gn")
    loss = model(torch.randn(4, 1, 28, 28)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name, low, high", [
    ("resnet20", 0.26e6, 0.28e6),   # He et al. 2016: 0.27M
    ("resnet56", 0.84e6, 0.86e6),   # 0.85M
    ("resnet18", 11.1e6, 11.3e6),   # CIFAR variant: 11.2M
    ("vgg16", 14.6e6, 14.8e6),      # 13 convolutions + one 512 x 10 classifier
])
def test_parameter_counts(name, low, high):
    assert low < _n_params(build_model(name, 3, 10, 32)) < high


def test_resnet20_count_is_exact_for_option_a():
    # Option A shortcuts add no parameters: 269,722 with BatchNorm and 10 classes.
    assert _n_params(build_model("resnet20", 3, 10, 32)) == 269_722


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = build_model("resnet20", 3, 10, 32).state_dict()
    torch.manual_seed(3)
    b = build_model("resnet20", 3, 10, 32).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_convolutions_use_kaiming_init():
    torch.manual_seed(0)
    model = build_model("vgg16", 3, 10, 32)
    conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]  # 512 -> 512, 3 x 3
    fan_in = conv.in_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.02)


def test_group_norm_needs_a_divisor_of_every_width():
    with pytest.raises(ValueError, match="resnet20: n_groups=3 does not divide .* 16 channels"):
        build_model("resnet20", 3, 10, 32, norm="gn", n_groups=3)
    build_model("resnet20", 3, 10, 32, norm="gn", n_groups=16)


def test_default_groups_fit_every_model():
    for name in MODELS:
        build_model(name, 3, 10, 32, norm="gn")


def test_n_groups_without_group_norm_warns():
    with pytest.warns(UserWarning, match="n_groups=4 is ignored"):
        build_model("mlp", 1, 10, 28, norm="bn", n_groups=4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="resnet19"), "unknown model"),
    (dict(name="cnn", norm="ln"), "norm must be one of"),
    (dict(name="cnn", num_classes=0), "must be >= 1"),
    (dict(name="cnn", norm="gn", n_groups=0), "n_groups must be >= 1"),
])
def test_bad_arguments(kwargs, match):
    args = dict(in_channels=1, num_classes=10, image_size=28) | kwargs
    with pytest.raises(ValueError, match=match):
        build_model(**args)

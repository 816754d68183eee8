"""dsgd.data.augment: batched random crop (zero padding) and horizontal flip."""
import torch
import torch.nn.functional as F

from dsgd.data.augment import Augmentation, augmentation_for, crop_flip


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# A 1 x 2 x 3 image with distinct values: rows [1 2 3] and [4 5 6].
IMAGE = torch.tensor([[[1, 2, 3], [4, 5, 6]]], dtype=torch.uint8)
MIRROR = torch.tensor([[[3, 2, 1], [6, 5, 4]]], dtype=torch.uint8)


def test_shapes_dtypes_and_determinism():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out = crop_flip(x, _gen(), padding=4)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, crop_flip(x, _gen(), padding=4))
    assert not torch.equal(out, crop_flip(x, _gen(1), padding=4))
    assert crop_flip(x.float(), _gen(), padding=4).dtype == torch.float32


def test_flip_mirrors_left_right_or_leaves_the_image():
    batch = IMAGE.expand(64, 1, 2, 3)
    out = crop_flip(batch, _gen(), crop=False, flip=True)
    mirrored = (out == MIRROR).flatten(1).all(1)
    kept = (out == IMAGE).flatten(1).all(1)
    assert bool((mirrored | kept).all())
    assert 16 < int(mirrored.sum()) < 48  # about half of 64


def test_crop_returns_a_shifted_window_of_the_zero_padded_image():
    batch = IMAGE.expand(200, 1, 2, 3)
    out = crop_flip(batch, _gen(), padding=1, flip=False)
    padded = F.pad(IMAGE, (1, 1, 1, 1))  # 1 x 4 x 5
    windows = {(dy, dx): padded[:, dy:dy + 2, dx:dx + 3] for dy in range(3) for dx in range(3)}
    seen = set()
    for img in out:
        match = [k for k, win in windows.items() if torch.equal(img, win)]
        assert match, "every output must be one of the 9 windows"
        seen.add(match[0])
    assert seen == set(windows)  # all 9 offsets turn up in 200 draws
    assert (out == 0).any()  # shifted content brings in zero padding


def test_crop_and_flip_together_match_a_per_sample_reference():
    x = torch.randint(0, 256, (50, 2, 6, 5), dtype=torch.uint8)
    out = crop_flip(x, _gen(3), padding=2)
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        candidates = [padded[i, :, dy:dy + 6, dx:dx + 5] for dy in range(5) for dx in range(5)]
        candidates += [c.flip(-1) for c in candidates]
        assert any(torch.equal(out[i], c) for c in candidates)


def test_no_padding_and_no_flip_is_the_identity():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(crop_flip(x, _gen(), padding=0, flip=False), x)
    assert torch.equal(crop_flip(x, _gen(), crop=False, flip=False), x)


def test_dataset_defaults():
    assert augmentation_for("cifar10") == Augmentation(crop=True, flip=True, padding=4)
    assert not augmentation_for("fashion-mnist").enabled
    assert not augmentation_for("no-such-dataset").enabled


def test_augmentation_object_applies_its_setting():
    x = IMAGE.expand(32, 1, 2, 3)
    flip_only = Augmentation(crop=False, flip=True)
    assert torch.equal(flip_only(x, _gen()), crop_flip(x, _gen(), crop=False, flip=True))
    assert torch.equal(Augmentation(crop=False, flip=False)(x, _gen()), x)

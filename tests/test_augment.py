"""Batched augmentation: per-sample randomness, identity at zero strength, shapes and ranges kept."""

from __future__ import annotations

import pytest
import torch

from mnist_sweep.augment import Compose, RandomAffine, RandomCrop, RandomErasing, RandomHorizontalFlip


@pytest.fixture
def batch():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a vertical bar: any rotation moves its pixels
    return x


def test_zero_strength_affine_is_identity(batch):
    assert torch.allclose(RandomAffine(0.0)(batch), batch, atol=1e-5)


def test_rotation_differs_per_sample(batch):
    out = RandomAffine(15.0)(batch)
    assert out.shape == batch.shape
    per_sample = out.flatten(1)
    assert not torch.allclose(per_sample[0], per_sample[1])
    assert (per_sample - batch.flatten(1)).abs().sum(1).gt(0).float().mean() > 0.9


def test_affine_keeps_range_and_mass_roughly(batch):
    out = RandomAffine(18.0, translate=0.1, scale=(0.8, 1.2))(batch)
    assert out.min() >= 0 and out.max() <= 1 + 1e-5
    ratio = out.sum((1, 2, 3)) / batch.sum((1, 2, 3))
    assert ratio.min() > 0.5 and ratio.max() < 1.6


def test_erasing_blanks_a_rectangle_in_chosen_images():
    x = torch.ones(200, 1, 28, 28)
    out = RandomErasing(p=0.5)(x)
    erased = (out == 0).flatten(1).any(1)
    assert 0.3 < erased.float().mean() < 0.7
    assert torch.equal(RandomErasing(p=0.0)(x), x)


def test_empty_compose_is_identity(batch):
    assert torch.equal(Compose([])(batch), batch)


@pytest.mark.parametrize("kwargs", [{"degrees": -1}, {"degrees": 5, "translate": 1.5}, {"degrees": 5, "scale": (0, 1)}])
def test_bad_affine_ranges_are_refused(kwargs):
    with pytest.raises(ValueError):
        RandomAffine(**kwargs)


def test_flip_mirrors_about_half_the_images_and_leaves_the_rest():
    x = torch.rand(400, 1, 28, 28)
    out = RandomHorizontalFlip(0.5)(x)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert torch.all(mirrored ^ kept)  # every image is one or the other, exactly
    assert 0.4 < mirrored.float().mean() < 0.6
    assert torch.equal(RandomHorizontalFlip(0.0)(x), x)
    assert torch.equal(RandomHorizontalFlip(1.0)(x), x.flip(-1))


def test_crop_shifts_each_image_by_whole_pixels_within_the_padding():
    torch.manual_seed(1)
    x = torch.rand(300, 2, 28, 28) + 1  # no zeros inside, so the zero fill marks the shift
    out = RandomCrop(padding=2)(x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    windows = padded.unfold(2, 28, 1).unfold(3, 28, 1)  # [n, c, 5, 5, 28, 28]: every whole-pixel shift
    matches = (windows == out[:, :, None, None]).flatten(4).all(-1).all(1)  # [n, 5, 5], channels shifted together
    assert torch.all(matches.flatten(1).sum(1) == 1)
    offsets = matches.flatten(1).float().argmax(1)
    assert len(offsets.unique()) == 25  # all 25 shifts drawn, per sample
    assert torch.equal(RandomCrop(padding=0)(x), x)


@pytest.mark.parametrize("make", [lambda: RandomHorizontalFlip(1.5), lambda: RandomCrop(-1)])
def test_bad_flip_and_crop_settings_are_refused(make):
    with pytest.raises(ValueError):
        make()

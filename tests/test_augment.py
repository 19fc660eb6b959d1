"""Batched augmentation: per-sample randomness, identity at zero strength, shapes and ranges kept."""

from __future__ import annotations

import pytest
import torch

from mnist_sweep.augment import Compose, RandomAffine, RandomErasing


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

"""Every model config instantiates with Hydra, has exactly its declared parameter count and the seeds' own
architecture checks: BatchNorm, Dropout, and global average pooling or a linear head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mnist_sweep.errors import UserError
from mnist_sweep.models import ConvBlock, Dropout, GAPHead, Residual, count_parameters
from mnist_sweep.train import build_model, measure

from .helpers import CONF, compose_config

MODEL_NAMES = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
SEED_COUNTS = {"gap8k": 7788, "squeeze12k": 12534, "pool7k": 6790, "wide19k": 18596}


@pytest.fixture(params=MODEL_NAMES)
def model_cfg(request):
    return compose_config(f"model={request.param}").model


def test_every_seed_architecture_has_a_config():
    assert set(SEED_COUNTS) <= set(MODEL_NAMES)
    assert {compose_config(f"model={m}").model.source for m in MODEL_NAMES} >= {f"seed 00{i}" for i in range(5)}


def test_parameter_count_is_exactly_the_declared_one(model_cfg):
    if model_cfg.declared_params is None:  # the parametric search family: its count depends on its knobs
        assert model_cfg.name == "family"
        return
    assert count_parameters(build_model(model_cfg)) == model_cfg.declared_params
    if model_cfg.name in SEED_COUNTS:
        assert model_cfg.declared_params == SEED_COUNTS[model_cfg.name]


def test_has_batchnorm_dropout_and_gap_or_linear_head(model_cfg):
    modules = list(build_model(model_cfg).modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in modules)
    assert any(isinstance(m, nn.Dropout) and m.p > 0 for m in modules)
    assert any(isinstance(m, nn.AdaptiveAvgPool2d | nn.Linear) for m in modules)


def test_maps_a_batch_to_class_logits(model_cfg):
    model = build_model(model_cfg).eval()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_gap8k_reproduces_seed_000_layer_table():
    convs = [m for m in build_model(compose_config().model).modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert [m.weight.numel() for m in convs] == [72, 576, 64, 720, 1440, 2304, 2304, 160]


def test_residual_adds_its_input():
    block = Residual([nn.Identity()])
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(block(x), 2 * x)


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1])
def test_dropout_outside_0_1_is_refused(p):
    with pytest.raises(ValueError, match="dropout"):
        ConvBlock(1, 8, dropout=p)
    with pytest.raises(ValueError, match="dropout"):
        GAPHead(8, dropout=p)


def test_head_without_classifier_needs_one_channel_per_class():
    with pytest.raises(ValueError, match="num_classes"):
        GAPHead(16, classifier=False)


def test_fast_dropout_drops_p_and_rescales_the_rest():
    torch.manual_seed(0)
    x = torch.ones(64, 8, 26, 26)
    y = Dropout(0.1).train()(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 26 / 256) < 0.003  # p rounded to 1/256
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 256 / 230))
    assert abs(y.mean().item() - 1.0) < 0.005  # the rescale makes the expectation exact


def test_fast_dropout_near_one_keeps_one_value_in_256():
    x = torch.ones(16, 8, 10, 10)
    y = Dropout(0.999)(x)  # rounds to 256/256: capped at 255/256, never a division by zero
    assert torch.isfinite(y).all() and set(y.unique().tolist()) <= {0.0, 256.0}


def test_fast_dropout_below_half_a_step_drops_nothing_and_draws_nothing():
    """p <= 1/512 rounds to no dropped byte value: x comes back as it is, and the generator is not advanced (a mask
    that drops nothing would cost as much as one that does)."""
    x = torch.randn(4, 8, 6, 6)
    torch.manual_seed(3)
    assert Dropout(0.0019).train()(x) is x
    after = torch.rand(1)
    torch.manual_seed(3)
    assert torch.equal(torch.rand(1), after)
    assert not torch.equal(Dropout(0.002).train()(torch.ones(64, 8, 26, 26)), torch.ones(64, 8, 26, 26))  # 1/256


def test_fast_dropout_is_identity_in_eval_and_follows_the_seed():
    x = torch.randn(4, 8, 6, 6)
    assert torch.equal(Dropout(0.3).eval()(x), x)
    torch.manual_seed(1)
    a = Dropout(0.3)(x)
    torch.manual_seed(1)
    assert torch.equal(Dropout(0.3)(x), a)


def test_fast_dropout_keeps_channels_last_and_masks_gradients():
    x = torch.randn(8, 4, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = Dropout(0.5)(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0)


def test_measuring_a_model_leaves_the_run_untouched():
    """MACs are measured once more under budget.max_macs: that must not change what the run then trains."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert measure(model, "a conv").total_mult_adds > 0
    assert torch.equal(torch.rand(3), expected)  # the random stream is where it was
    assert model.training and torch.equal(model[1].running_mean, torch.zeros(4))  # mode and BN statistics kept


def test_torch_kernels_swap_in_the_same_state():
    """trainer.cpu_kernels=false: torch's nn.BatchNorm2d and nn.Dropout, with the weights and statistics kept."""
    from mnist_sweep.batchnorm import BatchNorm2d
    from mnist_sweep.models import with_torch_kernels

    model = build_model(compose_config("model=gap8k").model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    swapped = with_torch_kernels(model)
    kinds = {type(m) for m in swapped.modules()}
    assert nn.BatchNorm2d in kinds and nn.Dropout in kinds and BatchNorm2d not in kinds and Dropout not in kinds
    assert all(torch.equal(v, state[k]) for k, v in swapped.state_dict().items())
    original = build_model(compose_config("model=gap8k").model)
    original.load_state_dict(state)
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(swapped.eval()(x), original.eval()(x), atol=1e-6)


def test_a_cropping_model_sees_only_the_centre_and_keeps_its_checkpoint_keys():
    plain = build_model(compose_config("model=gap8k", "model.dropout=0").model).eval()
    cropped = build_model(compose_config("model=gap8k", "model.dropout=0", "model.net.crop=24").model).eval()
    cropped.load_state_dict(plain.state_dict())  # no parameters and no buffers of its own
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(cropped(x), plain(x[..., 2:26, 2:26]), atol=1e-6)
        outside = x.clone()
        outside[..., :2, :] = 5.0  # what lies outside the crop does not matter
        assert torch.equal(cropped(outside), cropped(x))
    assert measure(cropped, "cropped").total_mult_adds < 0.65 * measure(plain, "plain").total_mult_adds
    with pytest.raises(UserError, match="crop must be 1 to 28 pixels"):
        build_model(compose_config("model=gap8k", "model.net.crop=29").model)
    with pytest.raises(UserError, match="cannot take a 28x28 image"):  # gap8k's convs need more than 12x12
        measure(build_model(compose_config("model=gap8k", "model.net.crop=12").model), "gap8k")

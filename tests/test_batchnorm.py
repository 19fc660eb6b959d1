"""mnist_sweep.batchnorm.BatchNorm2d against torch's nn.BatchNorm2d: the same outputs, gradients and running
statistics within float32 rounding, on the shapes the family produces (narrow, odd widths, pixel counts the row
fold does not divide, a large mean offset) and through every fallback path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mnist_sweep.batchnorm import BatchNorm2d, _fold, _TrainBatchNorm

CL = torch.channels_last


def pair(channels: int, momentum: float | None = 0.1) -> tuple[nn.BatchNorm2d, BatchNorm2d]:
    reference = nn.BatchNorm2d(channels, momentum=momentum)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-1, 1)
    fast = BatchNorm2d(channels, momentum=momentum)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def step(bn: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    x = x.clone().requires_grad_()
    y = bn(x)
    y.backward(grad)
    return y, x.grad, bn.weight.grad, bn.bias.grad


def assert_same_step(shape, offset=0.0, dtype=torch.float32, memory_format=CL, train=True, momentum=0.1):
    """Two training steps of both modules on the same input; the fast one must be as close to a float64 run of
    torch's module as torch's own module in `dtype` is (plus float32 rounding)."""
    torch.manual_seed(0)
    reference, fast = pair(shape[1], momentum)
    exact = nn.BatchNorm2d(shape[1], momentum=momentum).double()
    exact.load_state_dict(reference.state_dict())
    for bn in (reference, fast, exact):
        bn.train(train)
    reference.to(dtype), fast.to(dtype)
    x = (torch.randn(shape, dtype=torch.float64) * 2 + offset).contiguous(memory_format=memory_format)
    grad = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=memory_format)
    for _ in range(2):  # twice: the running statistics of the first step feed nothing, then they must agree
        truth = step(exact, x, grad)
        expected, got = step(reference, x.to(dtype), grad.to(dtype)), step(fast, x.to(dtype), grad.to(dtype))
        assert_step_no_worse_than_torch(truth, expected, got)
        for bn in (reference, fast, exact):
            bn.zero_grad()
    assert_statistics_no_worse_than_torch(exact, reference, fast)
    assert reference.num_batches_tracked == fast.num_batches_tracked
    return got


def assert_step_no_worse_than_torch(truth, expected, got):
    """Each of the fast module's step results (output, grads) is as close to the float64 truth as torch's (plus
    float32 rounding)."""
    for name, t, a, b in zip(("output", "input grad", "weight grad", "bias grad"), truth, expected, got, strict=True):
        torch_error = (a.double() - t).abs().max().item()
        error = (b.double() - t).abs().max().item()
        assert error <= 1.5 * torch_error + 1e-5 * (t.abs().max().item() + 1), (name, error, torch_error)


def assert_statistics_no_worse_than_torch(exact, reference, fast):
    for name in ("running_mean", "running_var"):
        t, a, b = (getattr(bn, name).double() for bn in (exact, reference, fast))
        assert (b - t).abs().max() <= 1.5 * (a - t).abs().max() + 1e-5 * (t.abs().max() + 1), name


@pytest.mark.parametrize(
    "shape",
    [(128, 8, 26, 26), (128, 6, 24, 24), (88, 10, 10, 10), (7, 15, 6, 6), (3, 12, 1, 1), (5, 3, 7, 7)],
    ids=str,
)
def test_the_training_step_matches_torch(shape):
    assert BatchNorm2d(shape[1])._fast_path(torch.zeros(shape).contiguous(memory_format=CL))  # the kernel's case
    output, input_grad, *_ = assert_same_step(shape)
    assert output.is_contiguous(memory_format=CL) and input_grad.is_contiguous(memory_format=CL)


def test_statistics_are_exact_far_from_zero():
    """Statistics and the weight gradient are taken about the mean: a mean 100 standard deviations off zero costs
    no accuracy (E[x^2] - mean^2, or sum(dy * x) - mean * sum(dy), in float32 would lose most of their digits)."""
    assert_same_step((32, 8, 12, 12), offset=200.0)


@pytest.mark.parametrize(
    "case",
    [
        {"train": False},  # evaluation: running statistics
        {"memory_format": torch.contiguous_format},  # NCHW
        {"dtype": torch.bfloat16},  # autocast-style low precision
        {"momentum": None},  # cumulative moving average
        {"shape": (16, 16, 10, 10)},  # a full vector of channels: torch's kernel vectorises well there
    ],
    ids=str,
)
def test_every_other_case_is_torch_own_kernel(case, monkeypatch):
    calls = []
    monkeypatch.setattr(_TrainBatchNorm, "apply", lambda *a: calls.append(a) or pytest.fail("fast path taken"))
    assert_same_step(**{"shape": (16, 8, 10, 10), **case})
    assert not calls


def test_the_row_fold_divides_the_pixel_count():
    for channels in (1, 3, 6, 8, 10, 16, 64, 100):
        for pixels in (1, 7, 88 * 100, 128 * 676):
            k = _fold(channels, pixels)
            assert pixels % k == 0 and (k * channels >= 64 or k == 1 or pixels % (k + 1))


def test_a_checkpoint_loads_into_torch_batchnorm():
    _, fast = pair(8)
    assert set(fast.state_dict()) == set(nn.BatchNorm2d(8).state_dict())
    assert isinstance(fast, nn.BatchNorm2d)


def test_under_autocast_a_bf16_activation_is_normalised_in_fp32(monkeypatch):
    """Under CPU autocast a conv hands batch norm a bf16 activation: the kernel takes it, computes in fp32 and returns
    bf16 like torch's module, at least as close to a float64 run as torch's own bf16 kernel, and hands backward a
    bf16 input gradient."""
    torch.manual_seed(0)
    shape = (32, 8, 12, 12)
    reference, fast = pair(shape[1])
    exact = nn.BatchNorm2d(shape[1]).double()
    exact.load_state_dict(reference.state_dict())
    x = (torch.randn(shape) * 2 + 3).contiguous(memory_format=CL).bfloat16()
    grad = torch.randn(shape).contiguous(memory_format=CL).bfloat16()
    truth = step(exact, x.double(), grad.double())
    calls = []
    apply = _TrainBatchNorm.apply
    monkeypatch.setattr(_TrainBatchNorm, "apply", lambda *a: calls.append(a) or apply(*a))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, got = step(reference, x, grad), step(fast, x, grad)
    assert len(calls) == 1  # the fast module's step, and only it
    output, input_grad = got[:2]
    assert output.dtype == input_grad.dtype == torch.bfloat16 and output.is_contiguous(memory_format=CL)
    assert_step_no_worse_than_torch(truth, expected, got)
    assert_statistics_no_worse_than_torch(exact, reference, fast)

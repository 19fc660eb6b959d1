"""Reusable CNN blocks. The configs in conf/model/ compose them with Hydra's `_target_`, so an architecture is
data (a list of blocks) rather than a class per seed project."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def _check_dropout(p: float) -> float:
    # torch accepts p == 1, which silently zeroes every activation; refuse it here with a clear message.
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return p


class ConvBlock(nn.Sequential):
    """Conv2d, then ReLU and BatchNorm in the order the seed used, then optional Dropout.

    order: "relu_bn" (conv→ReLU→BN, seeds 000/003), "bn_relu" (conv→BN→ReLU, seeds 001/004) or "none"
    (a bare conv, e.g. seed 000's 1x1 transition).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        padding: int = 0,
        bias: bool = False,
        order: str = "relu_bn",
        dropout: float = 0.0,
    ) -> None:
        post = {
            "relu_bn": [nn.ReLU(inplace=True), nn.BatchNorm2d(out_ch)],
            "bn_relu": [nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)],
            "none": [],
        }
        if order not in post:
            raise ValueError(f"ConvBlock order must be one of {sorted(post)}, got {order!r}")
        layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, padding=padding, bias=bias), *post[order]]
        if _check_dropout(dropout) > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class Residual(nn.Module):
    """y = x + body(x). The body must keep the channel count and spatial size."""

    def __init__(self, body: Iterable[nn.Module]) -> None:
        super().__init__()
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class GAPHead(nn.Sequential):
    """Global average pooling, optional Dropout, then a linear classifier, or none when the last conv already
    has one channel per class (seed 003). A 1x1 conv after GAP (seed 001) is the same map as this Linear."""

    def __init__(
        self,
        in_ch: int,
        num_classes: int = 10,
        classifier: bool = True,
        bias: bool = False,
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if _check_dropout(dropout) > 0:
            layers.append(nn.Dropout(dropout))
        if classifier:
            layers.append(nn.Linear(in_ch, num_classes, bias=bias))
        elif in_ch != num_classes:
            raise ValueError(f"GAPHead without classifier needs in_ch == num_classes, got {in_ch} != {num_classes}")
        super().__init__(*layers)


class Net(nn.Sequential):
    """A model is its blocks in order; the last one must produce [batch, num_classes] logits."""

    def __init__(self, blocks: Iterable[nn.Module]) -> None:
        super().__init__(*blocks)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

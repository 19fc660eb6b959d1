"""Reusable CNN blocks. The configs in conf/model/ compose them with Hydra's `_target_`, so an architecture is
data (a list of blocks) rather than a class per seed project."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mnist_sweep.batchnorm import BatchNorm2d

IMAGE_SIZE = 28  # MNIST's and Fashion-MNIST's images: 28x28, one channel


def _check_dropout(p: float) -> float:
    # torch accepts p == 1, which silently zeroes every activation; refuse it here with a clear message.
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return p


def dropped_bytes(p: float) -> int:
    """Of every 256 byte values, how many Dropout drops at rate p: p rounded to 1/256 (one value always keeps), so
    0 at 1/512 or less."""
    return min(round(p * 256), 255)


class Dropout(nn.Dropout):
    """nn.Dropout with a cheaper mask on CPU.

    torch draws a CPU dropout mask one Bernoulli sample at a time (bernoulli_, ~5 ns per element), which measured
    about 30% of a gap8k training step. Here one random_ call fills 64 bits, read as eight 8-bit uniforms: drawing
    the bits is most of a mask's cost (mt19937), so a byte per element costs half of what 16 bits did. The drop
    rate is p rounded to 1/256 (0.05 drops 13/256 = 5.08%; at most 255/256; none at 1/512 or less), and the kept
    activations are scaled by the inverse of that rate's complement, so the expectation is exact. Same torch
    generator (torch.manual_seed governs it). Other devices keep torch's own kernel.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(_check_dropout(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or not _is_dense(x):
            return super().forward(x)
        dropped = dropped_bytes(self.p)
        if dropped == 0:  # p <= 1/512 drops nothing: no bits to draw (torch's generator is left where it was)
            return x
        bits = torch.empty((x.numel() + 7) // 8, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
        # Give the mask x's strides (a channels_last activation stays channels_last after the multiply).
        uniform8 = bits.view(torch.uint8)[: x.numel()].as_strided(x.shape, x.stride())
        keep = uniform8 >= dropped
        return x * keep.to(x.dtype).mul_(256 / (256 - dropped))


def _is_dense(x: torch.Tensor) -> bool:
    """Whether x's elements fill exactly x.numel() slots of memory, in any dimension order."""
    return x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)


class ConvBlock(nn.Sequential):
    """Conv2d, then ReLU and BatchNorm in the order the seed used, then optional Dropout.

    order: "relu_bn" (conv→ReLU→BN, seeds 000/003), "bn_relu" (conv→BN→ReLU, seeds 001/004) or "none"
    (a bare conv, e.g. seed 000's 1x1 transition). separable: a depthwise conv then a pointwise 1x1 (MobileNet).
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
        stride: int = 1,
        separable: bool = False,
    ) -> None:
        post = {
            "relu_bn": [nn.ReLU(inplace=True), BatchNorm2d(out_ch)],
            "bn_relu": [BatchNorm2d(out_ch), nn.ReLU(inplace=True)],
            "none": [],
        }
        if order not in post:
            raise ValueError(f"ConvBlock order must be one of {sorted(post)}, got {order!r}")
        if (
            separable
        ):  # depthwise kxk (one filter per input channel), then a pointwise 1x1 mix: ~k*k times fewer weights
            conv: list[nn.Module] = [
                nn.Conv2d(in_ch, in_ch, kernel, stride=stride, padding=padding, groups=in_ch, bias=False),
                nn.Conv2d(in_ch, out_ch, 1, bias=bias),
            ]
        else:
            conv = [nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=bias)]
        layers: list[nn.Module] = [*conv, *post[order]]
        if _check_dropout(dropout) > 0:
            layers.append(Dropout(dropout))
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
            layers.append(Dropout(dropout))
        if classifier:
            layers.append(nn.Linear(in_ch, num_classes, bias=bias))
        elif in_ch != num_classes:
            raise ValueError(f"GAPHead without classifier needs in_ch == num_classes, got {in_ch} != {num_classes}")
        super().__init__(*layers)


class Net(nn.Sequential):
    """A model is its blocks in order; the last one must produce [batch, num_classes] logits.

    crop: the model looks only at the central crop x crop pixels of its input. MNIST's digits sit in the central
    20x20 box of the 28x28 image (the central 24x24 holds 99.7 % of the ink), so a crop keeps the digit at its scale
    while every layer works on fewer pixels. It is part of the model, not of the data: the same 28x28 images go in
    for training, validation, test and the exported model, and the crop has no parameters (a checkpoint loads with
    or without it)."""

    def __init__(self, blocks: Iterable[nn.Module], crop: int | None = None) -> None:
        super().__init__(*blocks)
        if crop is not None and not 1 <= crop <= IMAGE_SIZE:
            raise ValueError(
                f"crop must be 1 to {IMAGE_SIZE} pixels (the images are {IMAGE_SIZE}x{IMAGE_SIZE}) or null, got {crop}"
            )
        self.crop = crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.crop is not None:
            top, left = (x.shape[-2] - self.crop) // 2, (x.shape[-1] - self.crop) // 2
            x = x[..., top : top + self.crop, left : left + self.crop]
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"crop={self.crop}" if self.crop is not None else ""


@dataclass(frozen=True)
class EvalViews:
    """Which views of each image an evaluation averages (test-time augmentation, trainer.tta_*): the image itself
    always; its left-right mirror (tta_flip, for mirror-symmetric classes such as clothes); the image turned by each
    angle in `rotations` (degrees); and with `shift` = n, moved n pixels right, left, down and up (for digits:
    the training augmentation's rotations and the small shifts a digit's position varies by)."""

    mirror: bool = False
    rotations: tuple[float, ...] = ()
    shift: int = 0

    @classmethod
    def of(cls, trainer) -> EvalViews:
        return cls(bool(trainer.tta_flip), tuple(float(r) for r in trainer.tta_rotations), int(trainer.tta_shift))

    @property
    def count(self) -> int:
        return 1 + self.mirror + len(self.rotations) + (4 if self.shift else 0)

    def describe(self) -> str:
        parts = ["the image"]
        if self.mirror:
            parts.append("its mirror")
        if self.rotations:
            parts.append("turned by " + ", ".join(f"{r:+g}" for r in self.rotations) + " degrees")
        if self.shift:
            parts.append(f"moved {self.shift} pixel{'s' if self.shift > 1 else ''} each way")
        return ", ".join(parts)

    def wrap(self, net: nn.Module) -> nn.Module:
        """The net as evaluations see it: itself, or the average over these views."""
        return ViewAveraged(net, self) if self.count > 1 else net


PLAIN = EvalViews()  # the image alone: how every evaluation runs unless trainer.tta_* asks for more


class ViewAveraged(nn.Module):
    """The net's logits averaged over views of each image (EvalViews): how a run with test-time views validates and
    tests, as one module, so that the MLflow model it logs serves the accuracy it reports. No parameters of its
    own; the net's state_dict keys gain the prefix "net.". It takes the normalised image; rotated and shifted views
    extend the image's edge pixels into the corners they uncover (for MNIST-like images that is the background, as
    the training augmentation's fill is), so the module needs no normalisation constants."""

    def __init__(self, net: nn.Module, views: EvalViews) -> None:
        super().__init__()
        self.net, self.views = net, views
        # affine_grid maps output to input coordinates: the inverse rotation, as in augment.RandomAffine
        angles = torch.tensor(views.rotations, dtype=torch.float32) * (math.pi / 180)
        cos, sin, zero = torch.cos(angles), torch.sin(angles), torch.zeros_like(angles)
        thetas = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
        self.register_buffer("thetas", thetas, persistent=False)  # [rotations, 2, 3]; not in the state_dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.net(x)
        if self.views.mirror:
            total = total + self.net(x.flip(-1))
        for i in range(len(self.views.rotations)):
            # predict wraps the net per call, so the buffer is made on the CPU: bring it to the batch's device
            theta = self.thetas[i].to(device=x.device, dtype=x.dtype).expand(x.shape[0], 2, 3)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            turned = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
            total = total + self.net(turned)
        if s := self.views.shift:
            h, w = x.shape[-2:]
            padded = F.pad(x, (s, s, s, s), mode="replicate")
            for dy, dx in ((0, s), (0, -s), (s, 0), (-s, 0)):
                total = total + self.net(padded[..., s + dy : s + dy + h, s + dx : s + dx + w])
        return total / self.views.count


def with_torch_kernels(model: nn.Module) -> nn.Module:
    """torch's own nn.Dropout and nn.BatchNorm2d in place of the project's CPU kernels (trainer.cpu_kernels=false,
    and the benchmark's comparison): same math and state, torch's kernels."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, Dropout):
                setattr(parent, name, nn.Dropout(child.p))
            elif isinstance(child, BatchNorm2d):
                stock = nn.BatchNorm2d(child.num_features, child.eps, child.momentum)
                stock.load_state_dict(child.state_dict())
                setattr(parent, name, stock)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

"""Per-sample random augmentation applied to whole batches on the training device.

torchvision's transforms draw one set of parameters per call, so on a batch tensor every image would get the same
rotation; drawing per-sample parameters and warping with one affine_grid/grid_sample call keeps the hot loop free
of per-image Python. Inputs are float batches [B, 1, H, W] in [0, 1] before normalisation, so the zero fill
is the MNIST background.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


class RandomAffine(nn.Module):
    """Rotation by ±degrees, shift by up to `translate` of the image size, zoom in [scale_min, scale_max]."""

    def __init__(self, degrees: float, translate: float = 0.0, scale: tuple[float, float] = (1.0, 1.0)) -> None:
        super().__init__()
        if degrees < 0 or not 0 <= translate < 1 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"bad affine range: degrees={degrees}, translate={translate}, scale={tuple(scale)}")
        self.degrees, self.translate, self.scale = degrees, translate, tuple(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, dev = x.shape[0], x.device
        angle = _uniform(n, -self.degrees, self.degrees, dev) * (math.pi / 180)
        zoom = _uniform(n, *self.scale, dev)
        # affine_grid maps output to input coordinates, so build the inverse of "rotate, zoom, then shift";
        # coordinates span [-1, 1], hence a shift of `translate` image widths is 2 * translate.
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        shift = _uniform(2 * n, -2 * self.translate, 2 * self.translate, dev).view(n, 2, 1)
        inv = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)
        theta = torch.cat([inv, -inv @ shift], dim=2)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class RandomErasing(nn.Module):
    """torchvision's RandomErasing drawn per sample for a whole batch. Where torchvision retries a rectangle
    that does not fit, this clamps it to the image, which keeps the work a fixed number of tensor ops."""

    def __init__(
        self,
        p: float = 0.5,
        scale: tuple[float, float] = (0.02, 0.33),
        ratio: tuple[float, float] = (0.3, 3.3),
        value: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= p <= 1 or not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"bad erasing range: p={p}, scale={tuple(scale)}, ratio={tuple(ratio)}")
        self.p, self.scale, self.ratio, self.value = p, tuple(scale), tuple(ratio), value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        dev = x.device
        area = height * width * _uniform(n, *self.scale, dev)
        aspect = torch.exp(_uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), dev))
        h = torch.sqrt(area * aspect).round().clamp(1, height)
        w = torch.sqrt(area / aspect).round().clamp(1, width)
        top = (torch.rand(n, device=dev) * (height - h + 1)).floor()
        left = (torch.rand(n, device=dev) * (width - w + 1)).floor()
        rows = torch.arange(height, device=dev).view(1, -1)
        cols = torch.arange(width, device=dev).view(1, -1)
        in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
        in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
        chosen = torch.rand(n, device=dev) < self.p
        mask = in_rows[:, :, None] & in_cols[:, None, :] & chosen[:, None, None]
        return x.masked_fill(mask[:, None], self.value)


class RandomHorizontalFlip(nn.Module):
    """Mirror left-right with probability p, drawn per sample (clothes are symmetric; digits are not: MNIST's
    configs never use it)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"bad flip probability: p={p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(x.shape[0], device=x.device) < self.p
        return torch.where(flip[:, None, None, None], x.flip(-1), x)


class RandomCrop(nn.Module):
    """torchvision's RandomCrop(size, padding) at the input's own size, drawn per sample: zero-pad by `padding`
    pixels, then take the image back at a random whole-pixel offset. One gather for the batch; no resampling blur,
    unlike a translation through grid_sample."""

    def __init__(self, padding: int = 2) -> None:
        super().__init__()
        if padding < 0:
            raise ValueError(f"bad crop padding: padding={padding}")
        self.padding = int(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            return x
        n, c, height, width = x.shape
        pad, dev = self.padding, x.device
        padded = F.pad(x, (pad, pad, pad, pad))
        top = torch.randint(0, 2 * pad + 1, (n, 1), device=dev) + torch.arange(height, device=dev)
        left = torch.randint(0, 2 * pad + 1, (n, 1), device=dev) + torch.arange(width, device=dev)
        rows = torch.arange(n, device=dev)[:, None, None, None]
        channels = torch.arange(c, device=dev)[None, :, None, None]
        return padded[rows, channels, top[:, None, :, None], left[:, None, None, :]]


class Compose(nn.Sequential):
    """Augmentations applied in order; an empty list is the identity (augmentation=none)."""

    def __init__(self, steps: list[nn.Module] = ()) -> None:
        super().__init__(*steps)

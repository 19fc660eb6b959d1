"""The BatchNorm forward's sum of squares, as it is (torch.linalg.vecdot) against as it was (vector_norm, squared):
the op alone on gap8k's activation shapes, then whole 20,000-image gap8k training epochs of the bench's project
pipeline, alternating the two forwards in one process so that the machine's drift hits both alike (README,
Performance). Run from the repository root: `python docs/measurements/batchnorm_sum_of_squares.py`."""

from __future__ import annotations

import statistics
import sys

import torch

from mnist_sweep import batchnorm as bn
from mnist_sweep import bench
from mnist_sweep.data import load_data


def vector_norm_forward(ctx, x, weight, bias, eps):
    """_TrainBatchNorm.forward before commit b6d331e, the only change being the sum of squares."""
    channels = x.shape[1]
    pixels = x.numel() // channels
    k = bn._fold(channels, pixels)
    rows = bn._rows(x, k)
    mean = bn._per_channel(rows.sum(0), channels) / pixels
    out = torch.empty_like(x, memory_format=torch.channels_last)
    out_rows = torch.sub(rows, mean.repeat(k), out=bn._rows(out, k))
    var = bn._per_channel(torch.linalg.vector_norm(out_rows, dim=0).square_(), channels) / pixels
    invstd = torch.rsqrt(var + eps)
    scale = weight * invstd
    torch.addcmul(bias.repeat(k), out_rows, scale.repeat(k), out=out_rows)
    ctx.save_for_backward(x, weight, mean, invstd)
    ctx.k = k
    return out, mean, var


def ops() -> None:
    print("the sum of squares of a centred [rows, k*C] activation: microseconds, median of 5; relative error vs fp64")
    for shape in ((128, 8, 26, 26), (128, 8, 24, 24), (128, 12, 10, 10)):
        x = (torch.randn(shape) * 3 + 5).contiguous(memory_format=torch.channels_last)
        rows = bn._rows(x, bn._fold(shape[1], x.numel() // shape[1]))
        centred = rows - rows.mean(0)
        ways = {
            "vector_norm^2": lambda c=centred: torch.linalg.vector_norm(c, dim=0).square_(),
            "vecdot": lambda c=centred: torch.linalg.vecdot(c, c, dim=0),
        }
        exact = centred.double().square().sum(0)
        cells = []
        for name, way in ways.items():
            us = statistics.median(bn._time_us(way, 200) for _ in range(5))
            error = ((way().double() - exact).abs() / exact).max().item()
            cells.append(f"{name} {us:6.0f} us (error {error:.0e})")
        print(f"  {str(list(shape)):<18}" + "   ".join(cells))


def epochs(pairs: int = 11) -> None:
    sys.argv = sys.argv[:1]  # the bench's defaults: gap8k, 20,000 images, batch 128
    args = bench.parse_args()
    cfg = bench.compose_config(args)
    device = torch.device("cpu")
    data = load_data(cfg.dataset, device)
    pipeline = bench.ProjectPipeline.build(cfg, device)
    forwards = {"vecdot": bn._TrainBatchNorm.forward, "vector_norm": vector_norm_forward}
    for forward in forwards.values():  # warm-up
        bn._TrainBatchNorm.forward = staticmethod(forward)
        bench.time_project_epoch(pipeline, cfg, data, device)
    ratios = []
    for _ in range(pairs):
        seconds = {}
        for name, forward in forwards.items():
            bn._TrainBatchNorm.forward = staticmethod(forward)
            seconds[name] = bench.time_project_epoch(pipeline, cfg, data, device)
        ratios.append(seconds["vector_norm"] / seconds["vecdot"])
        print(f"  epoch: vecdot {seconds['vecdot']:.2f} s, vector_norm {seconds['vector_norm']:.2f} s", flush=True)
    print(
        f"vecdot's epochs {statistics.median(ratios):.3f}x as fast (median of {pairs} pairs; {min(ratios):.2f}-"
        f"{max(ratios):.2f}), {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    ops()
    epochs()

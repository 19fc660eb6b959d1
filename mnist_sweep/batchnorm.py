"""BatchNorm2d for narrow channels_last activations on the CPU.

torch's CPU batch norm on a channels_last tensor with fewer than 16 channels computes its statistics with a Welford
pass that does not vectorise over so few channels, and its threads split the work by channel: on a [128, 8, 26, 26]
activation with 2 threads it took about 1.3 ms forward and 2.8 ms forward plus backward, and batch norm was 40 % of
a gap8k training step (`python -m mnist_sweep.batchnorm` below; README, Performance). The same math as a handful of
plain tensor ops is several times faster, because a channels_last activation is a [pixels, channels] matrix and
every op here reads it as rows of at least 64 contiguous floats (`_rows`): per-channel sums become column sums, and
the scale and shift become one broadcast multiply-add.

Statistics are two-pass (mean, then the mean of squared deviations), as exact as torch's. Only channels_last CPU
tensors of 2-15 channels in training with a momentum take this path, fp32 or, under CPU autocast, bf16 (computed
in fp32: torch's bf16 kernel for such tensors was slower still, about half of a bf16 gap8k step on an AMX Xeon, README
Performance); everything else (eval, NCHW, CUDA, bf16 outside autocast, cumulative averaging, 16 channels or more)
is nn.BatchNorm2d's own kernel. State dict, buffers and behaviour are nn.BatchNorm2d's, so checkpoints load
either way.
"""

from __future__ import annotations

import torch
from torch import nn

MIN_ROW = 64  # floats per row: four AVX-512 vectors
# From a full AVX-512 vector of channels on, torch's kernel vectorises over the channels and makes fewer passes over
# memory; below it, this kernel (`python -m mnist_sweep.batchnorm` times both).
MAX_CHANNELS = 16


def _fold(channels: int, pixels: int) -> int:
    """How many pixels to put side by side in one row: k * channels >= MIN_ROW, and k divides the pixel count."""
    k = max(1, -(-MIN_ROW // channels))
    while pixels % k:
        k -= 1
    return k


def _rows(x: torch.Tensor, k: int) -> torch.Tensor:
    """A channels_last [N, C, H, W] tensor as a [N*H*W / k, k*C] matrix, without a copy."""
    return x.permute(0, 2, 3, 1).view(-1, k * x.shape[1])  # view: raises rather than copy (out= writes into it)


def _per_channel(row_sums: torch.Tensor, channels: int) -> torch.Tensor:
    return row_sums.view(-1, channels).sum(0)


class _TrainBatchNorm(torch.autograd.Function):
    @staticmethod
    # Under autocast a conv hands over a bf16 activation: cast it to fp32 and compute with autocast off (it would
    # run vecdot in bf16); custom_bwd runs backward in the same state, and autograd casts the input grad back.
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx, x, weight, bias, eps: float):
        channels = x.shape[1]
        pixels = x.numel() // channels
        k = _fold(channels, pixels)
        rows = _rows(x, k)
        mean = _per_channel(rows.sum(0), channels) / pixels
        # The output buffer first holds x - mean (no temporary: allocating activation-sized scratch tensors costs
        # page faults whenever the allocator hands back fresh memory), then becomes the output in place.
        out = torch.empty_like(x, memory_format=torch.channels_last)
        out_rows = torch.sub(rows, mean.repeat(k), out=_rows(out, k))
        # The sum of squares as a dot product: torch.linalg.vector_norm over dim 0 (then squared) was 2-4x slower on
        # an AVX2 CPU (0.55 against 0.16 ms on [128, 8, 26, 26]) and rounds through a square root.
        var = _per_channel(torch.linalg.vecdot(out_rows, out_rows, dim=0), channels) / pixels
        invstd = torch.rsqrt(var + eps)
        scale = weight * invstd
        torch.addcmul(bias.repeat(k), out_rows, scale.repeat(k), out=out_rows)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.k = k
        return out, mean, var

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_out, _grad_mean, _grad_var):
        x, weight, mean, invstd = ctx.saved_tensors
        k, channels = ctx.k, x.shape[1]
        pixels = x.numel() // channels
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)
        rows, grad_rows = _rows(x, k), _rows(grad_out, k)
        grad_bias = _per_channel(grad_rows.sum(0), channels)
        centred = rows - mean.repeat(k)  # not sum(dy * x) - mean * sum(dy): that cancels when |mean| >> std
        grad_weight = _per_channel(torch.linalg.vecdot(grad_rows, centred, dim=0), channels) * invstd
        # dx = weight * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)), as a * dy + b * (x - mean) + c
        a = weight * invstd
        b = -a * invstd * grad_weight / pixels
        c = -a * grad_bias / pixels
        grad_x = torch.empty_like(x, memory_format=torch.channels_last)
        out_rows = _rows(grad_x, k)
        torch.addcmul(c.repeat(k), grad_rows, a.repeat(k), out=out_rows)
        out_rows.addcmul_(centred, b.repeat(k))
        return grad_x, grad_weight, grad_bias, None


class BatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d whose training step on narrow channels_last CPU tensors uses _TrainBatchNorm (module doc)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fast_path(x):
            return super().forward(x)
        out, mean, var = _TrainBatchNorm.apply(x, self.weight, self.bias, self.eps)
        out = out.to(x.dtype)  # bf16 in, bf16 out, as torch's batch norm under autocast
        with torch.no_grad():
            pixels = x.numel() // x.shape[1]
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * (pixels / max(pixels - 1, 1)), self.momentum)  # unbiased, as torch
            self.num_batches_tracked.add_(1)
        return out

    def _fast_path(self, x: torch.Tensor) -> bool:
        return (
            self.training
            and self.affine
            and self.track_running_stats
            and self.momentum is not None
            and x.device.type == "cpu"
            and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and torch.is_autocast_enabled("cpu")))
            and self.weight.dtype == torch.float32
            and x.dim() == 4
            and 1 < x.shape[1] < MAX_CHANNELS
            and x.is_contiguous(memory_format=torch.channels_last)
        )


def _time_us(step, repeats: int) -> float:
    import time

    for _ in range(5):  # warm-up: the allocator settles on reusing these sizes
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1e6


def main() -> None:
    """`python -m mnist_sweep.batchnorm`: torch's kernel against this one on gap8k's BatchNorm shapes, in turn (at 16
    channels "ours" is torch's kernel too: MAX_CHANNELS)."""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; microseconds per call, median of 5 rounds")
    print(f"{'activation':<22}{'torch fwd':>10}{'ours fwd':>10}{'torch f+b':>11}{'ours f+b':>10}")
    for shape in ((128, 8, 26, 26), (128, 8, 24, 24), (128, 12, 10, 10), (128, 10, 10, 10), (128, 16, 6, 6)):
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()
        grad = torch.randn_like(x)
        rounds = []
        for _ in range(5):
            row = []
            for module in (nn.BatchNorm2d(shape[1]), BatchNorm2d(shape[1])):
                row.append(_time_us(lambda m=module, x=x: m(x), 50))
                row.append(_time_us(lambda m=module, x=x, g=grad: torch.autograd.grad(m(x), x, g), 50))
            rounds.append(row)
        torch_fwd, torch_both, ours_fwd, ours_both = (sorted(r[i] for r in rounds)[2] for i in range(4))
        print(f"{str(list(shape)):<22}{torch_fwd:>10.0f}{ours_fwd:>10.0f}{torch_both:>11.0f}{ours_both:>10.0f}")


if __name__ == "__main__":
    main()

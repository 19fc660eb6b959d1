"""How a model runs on this machine: its precision (trainer.amp, and whether the CPU has native bf16), the project's
CPU kernels or torch's, its memory format and compilation. The training loop (engine), the benchmark and the
profiler prepare their models here, so all three measure the same thing."""

from __future__ import annotations

import logging

import torch

from mnist_sweep.config import TrainerConfig
from mnist_sweep.models import with_torch_kernels

log = logging.getLogger(__name__)

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without either, oneDNN emulates bf16 arithmetic, and a bf16 2048x2048 torch.mm on a Zen 3
    EPYC (AVX2) ran at 0.9 GFLOP/s against 140 in fp32. torch has no public query for this yet (torch.cpu's are
    private)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """trainer.amp -> the autocast dtype; auto is bf16 on CUDA and off on CPU, where bf16 pays only on CPUs with
    native bf16 (AVX512-BF16, AMX) and is therefore opt-in."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return AMP_DTYPES[amp]


def autocast(device: torch.device, amp: str):
    """The autocast context for trainer.amp: a no-op in fp32."""
    dtype = autocast_dtype(amp, device)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def warn_if_emulated(amp: str, device: torch.device) -> None:
    """A CPU without AVX512-BF16 or AMX still runs trainer.amp=bf16, but emulated, many times slower than fp32: a
    setting carried over from a faster machine should not turn a minute's run into an hour's without a word."""
    if device.type == "cpu" and autocast_dtype(amp, device) == torch.bfloat16 and not cpu_has_native_bf16():
        log.warning(
            "trainer.amp=%s on a CPU without native bf16 (no AVX512-BF16, no AMX; torch reports %s): oneDNN emulates "
            "bf16 here, far slower than fp32 (a bf16 matrix product ran over 100x slower on a Zen 3 EPYC). "
            "trainer.amp=off trains in fp32.",
            amp,
            torch.backends.cpu.get_cpu_capability(),
        )


def prepare_model(model: torch.nn.Module, settings: TrainerConfig, device: torch.device) -> torch.nn.Module:
    """The model as it trains: the project's CPU kernels or torch's, on the device, in its memory format, compiled
    or not."""
    # The project's kernels are eager-mode work-arounds; inductor writes its own fused batch norm, and traced by
    # dynamo the project's (an autograd.Function over views) took ~270 s to compile and then ran at half the eager
    # speed on an AVX512 EPYC (README, "Switches").
    if not settings.cpu_kernels or settings.compile:
        model = with_torch_kernels(model)
    model.to(device, memory_format=torch.channels_last if settings.channels_last else torch.contiguous_format)
    torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels once
    if settings.compile:
        # In place, so state_dict keys stay those of the plain model. dynamic=False: one graph per batch shape (full
        # batches, an epoch's last partial batch, evaluation batches); by default the second shape made dynamo
        # recompile for a symbolic batch size, whose kernels ran slower than the static ones.
        model.compile(dynamic=False)
    return model

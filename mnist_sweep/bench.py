"""`python -m mnist_sweep.bench`: the project's training path against a seed-style pipeline, same model, same
number of images, timed in alternation so that drift on a noisy machine hits both sides alike.

(a) project: the whole split as one uint8 tensor on the device, per-sample rotation drawn for the whole batch,
    normalisation on the batch, channels_last (as `python -m mnist_sweep` trains).
(b) seed-style: torchvision's MNIST dataset + PIL RandomRotation(±7°) + ToTensor + Normalize per image, through
    a DataLoader, as the seed projects do, with the same layers in torch's stock form (nn.Dropout and
    nn.BatchNorm2d instead of the project's kernels, contiguous NCHW instead of channels_last).
Both train the model with SGD (momentum 0.9) at the same batch size for one epoch of --images images. A third
pipeline is (a) with torch's nn.BatchNorm2d and nn.Dropout instead of the project's CPU kernels, timed in the same
rounds, so the kernels' own gain is a ratio measured in one run too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import Subset
from torch.utils.flop_counter import FlopCounterMode

from mnist_sweep.config import CONF, TrainerConfig, register_configs, validate
from mnist_sweep.data import load_data
from mnist_sweep.engine import LRSchedule, train_one_epoch
from mnist_sweep.errors import at_least, refused_in_one_paragraph
from mnist_sweep.models import count_parameters
from mnist_sweep.runtime import autocast_dtype, cpu_has_native_bf16, prepare_model
from mnist_sweep.seed_style import seed_style_dataset, sgd, time_seed_style_epoch

PROJECT = "project (tensors on device)"
TORCH_KERNELS = "project, torch's BN + dropout"
SEED_STYLE = "seed-style (DataLoader + PIL)"
FULL_EPOCH = 55_000  # training images per epoch with the default 5,000-image validation split


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mnist_sweep.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="gap8k", help="a conf/model config (default: gap8k)")
    p.add_argument("--images", type=at_least(1), default=20_000, help="training images per timed epoch (default 20000)")
    p.add_argument("--batch-size", type=at_least(1), default=128)
    p.add_argument("--repeats", type=at_least(1), default=3, help="timed a/b pairs, alternating (default 3)")
    p.add_argument(
        "--workers", type=at_least(0), default=0, help="DataLoader workers for the seed-style side (default 0)"
    )
    p.add_argument("--threads", type=at_least(1), default=None, help="torch threads (default: torch's, one per core)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for the project side (trainer.channels_last=false)")
    return p.parse_args()


def compose_config(args: argparse.Namespace):
    register_configs()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                f"model={args.model}",
                f"trainer.batch_size={args.batch_size}",
                "trainer.progress=false",
                f"dataset.train_limit={args.images}",
                "augmentation=rotate",
                *args.overrides,
            ],
        )


@dataclasses.dataclass
class ProjectPipeline:
    """The project's side, built once and trained epoch after epoch (an epoch's speed does not depend on the
    weights, and trainer.compile=true then compiles once, in the warm-up epoch, as a run does)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    settings: TrainerConfig

    @classmethod
    def build(cls, cfg, device: torch.device, torch_kernels: bool = False) -> ProjectPipeline:
        """torch_kernels: with torch's nn.BatchNorm2d and nn.Dropout (trainer.cpu_kernels=false)."""
        settings = OmegaConf.to_object(cfg.trainer)  # the settings a run trains with (trainer.* overrides apply)
        if torch_kernels:
            settings = dataclasses.replace(settings, cpu_kernels=False)
        torch.manual_seed(0)
        model = prepare_model(instantiate(cfg.model.net), settings, device)  # as mnist_sweep.train prepares it
        return cls(model, sgd(model), settings)


def time_project_epoch(pipeline: ProjectPipeline, cfg, data, device: torch.device) -> float:
    optimizer = pipeline.optimizer
    schedule = LRSchedule(torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0), "epoch")
    augment = instantiate(cfg.augmentation).to(device)
    start = time.perf_counter()
    train_one_epoch(pipeline.model, data, optimizer, schedule, augment, pipeline.settings, desc="project")
    return time.perf_counter() - start


def forward_flops_per_image(cfg) -> int:
    model = instantiate(cfg.model.net).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, 28, 28))
    return counter.get_total_flops()


def gemm_peak(dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a size x size torch.mm on the same threads: what these cores reach on the friendliest dense work,
    the yardstick the training step is measured against. Best of `repeats`, after one warm-up."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = float("inf")
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:  # the first is the warm-up
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def machine_line(device: torch.device) -> str:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:  # the same model name covers EPYCs with and without AVX-512, and training speed differs ~2x between them
        isa = torch.backends.cpu.get_cpu_capability()
        bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
        where = f"{cpu} ({isa}, {bf16}), {os.cpu_count()} cores"
    return f"{where}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with refused_in_one_paragraph("mnist_sweep.bench", args.overrides):
        cfg = compose_config(args)
        validate(cfg)
        data = load_data(cfg.dataset, device)
        seed_data = seed_style_dataset(cfg, args.images)
    n_params = count_parameters(instantiate(cfg.model.net))
    flops = forward_flops_per_image(cfg)

    project = ProjectPipeline.build(cfg, device)
    torch_kernels = ProjectPipeline.build(cfg, device, torch_kernels=True)
    for pipeline in (project, torch_kernels):  # warm-up: allocator, oneDNN primitive caches, compilation
        time_project_epoch(pipeline, cfg, data, device)
    warm_up = Subset(seed_data.dataset, range(args.batch_size * 4))
    time_seed_style_epoch(cfg, warm_up, args.batch_size, args.workers, device)
    rates = {PROJECT: [], TORCH_KERNELS: [], SEED_STYLE: []}
    for _ in range(args.repeats):  # in turn, so that the machine's drift hits all three alike
        rates[PROJECT].append(args.images / time_project_epoch(project, cfg, data, device))
        rates[TORCH_KERNELS].append(args.images / time_project_epoch(torch_kernels, cfg, data, device))
        seed_style_s = time_seed_style_epoch(cfg, seed_data, args.batch_size, args.workers, device)
        rates[SEED_STYLE].append(args.images / seed_style_s)
    precision = "bf16" if autocast_dtype(cfg.trainer.amp, device) == torch.bfloat16 else "fp32"
    peaks = {"fp32": gemm_peak(torch.float32, device)}
    # Emulated bf16 (no AVX512-BF16, no AMX) is no peak to measure against, and its six 2048x2048 products alone
    # would take minutes: measured only where it is native, or when the project side trains in it.
    if device.type == "cuda" or cpu_has_native_bf16() or precision == "bf16":
        peaks["bf16"] = gemm_peak(torch.bfloat16, device)
    report(args, device, n_params, flops, rates, peaks, precision)


def pair_ratios(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b, strict=True)]


def report(args, device, n_params, flops, rates: dict[str, list[float]], peaks: dict, precision: str) -> None:
    """precision: the project side's (trainer.amp); its GFLOP/s are set against the GEMM peak of that precision,
    the seed-style side's (always fp32) against the fp32 peak."""
    train_flops = 3 * flops  # backward costs about twice the forward pass
    rows = {}
    for name, dtype in ((PROJECT, precision), (TORCH_KERNELS, precision), (SEED_STYLE, "fp32")):
        rate = statistics.median(rates[name])
        gflops = rate * train_flops / 1e9
        rows[name] = {
            "images_per_s": rate,
            "s_per_epoch_55k": FULL_EPOCH / rate,
            "gflop_per_s": gflops,
            "precision": dtype,
            "peak_fraction": gflops / peaks[dtype],
            "fp32_peak_fraction": gflops / peaks["fp32"],
        }
    print(f"machine : {machine_line(device)}")
    print(
        f"model   : {args.model}, {n_params:,} parameters, {flops / 1e6:.2f} MFLOP forward per image "
        f"(~{train_flops / 1e6:.2f} MFLOP per trained image)"
    )
    print(
        f"workload: {args.images:,} images per epoch, batch {args.batch_size}, rotation ±7°, SGD; "
        f"{args.repeats} alternating repeats, medians; s/epoch scaled to {FULL_EPOCH:,} images"
    )
    print(
        f"GEMM peak (2048x2048 torch.mm, same threads, this run): fp32 {peaks['fp32']:.0f} GFLOP/s, "
        + (f"bf16 {peaks['bf16']:.0f} GFLOP/s" if "bf16" in peaks else "bf16 not measured (not native here)")
    )
    print(f"{'pipeline':<32}{'images/s':>10}{'s/epoch':>10}{'GFLOP/s':>9}{'of peak':>14}")
    for name, r in rows.items():
        share = f"{100 * r['peak_fraction']:.1f}% {r['precision']}"
        print(f"{name:<32}{r['images_per_s']:>10,.0f}{r['s_per_epoch_55k']:>10.1f}{r['gflop_per_s']:>9.2f}{share:>14}")
    ratios = pair_ratios(rates[PROJECT], rates[SEED_STYLE])
    kernel_ratios = pair_ratios(rates[PROJECT], rates[TORCH_KERNELS])
    for label, values in (("speed-up", ratios), ("the project's CPU kernels", kernel_ratios)):
        print(
            f"{label}: {statistics.median(values):.2f}x (median of per-round ratios; all rounds: "
            f"{', '.join(f'{r:.2f}' for r in values)})"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "rows": rows,
                    "ratios": ratios,
                    "kernel_ratios": kernel_ratios,
                    "forward_flops": flops,
                    "gemm_peak_gflop_per_s": peaks,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()

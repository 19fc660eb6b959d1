"""`python -m mnist_sweep.profile [overrides]`: where a run's time goes, on this machine.

1. One epoch of the training loop a run uses (mnist_sweep.engine.train_one_epoch, the run's own model, data,
   augmentation and settings) under torch.profiler. Every op is charged to what asked for it: the model's layers
   by kind (forward hooks open a profiler range per layer), their backward (autograd's node names), the
   augmentation, the optimizer; the rest of the epoch (batching, loss, metrics, Python) is what is left. Then
   one evaluation of the validation split, as fit() does after every epoch.
2. One whole run, `python -m mnist_sweep <overrides>` in a scratch directory with its own MLflow store: the
   process's wall time against the phases the run itself logs (mnist_sweep.train.Stopwatch: data, MLflow,
   test, figures, checkpoint), and the import time of the training code (`python -X importtime`).

Overrides are a run's (e.g. model=pool7k trainer.amp=bf16); with none, experiment=fast. Overrides replace that default
rather than add to it (`trainer.amp=bf16` alone profiles the plain config, gap8k with dropout; pass
`experiment=fast trainer.amp=bf16` to compare with the default), and the header prints them. Figures vary with the
machine and its load: run it on an idle machine, and compare shares rather than seconds across machines.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

from mnist_sweep.config import CONF
from mnist_sweep.errors import at_least

DEFAULT_OVERRIDES = ["experiment=fast"]

# Forward: the layer kinds a model is built from (mnist_sweep.models, .batchnorm, torch.nn) and the augmentations.
FORWARD_KINDS = {
    "Conv2d": "conv",
    "BatchNorm2d": "batchnorm",
    "ReLU": "relu",
    "Dropout": "dropout",
    "MaxPool2d": "pool",
    "AdaptiveAvgPool2d": "head",
    "Flatten": "head",
    "Linear": "head",
    "RandomAffine": "augmentation",
    "RandomErasing": "augmentation",
}
# Backward: autograd node names -> the same kinds. MulBackward0 is Dropout's mask (no other layer multiplies).
BACKWARD_KINDS = [
    ("Convolution", "conv"),
    ("BatchNorm", "batchnorm"),
    ("Threshold", "relu"),
    ("Relu", "relu"),
    ("MulBackward", "dropout"),
    ("MaxPool", "pool"),
    ("AdaptiveAvgPool", "head"),
    ("Mean", "head"),
    ("Mm", "head"),
    ("Addmm", "head"),
    ("LogSoftmax", "loss"),
    ("NllLoss", "loss"),
]
FORWARD_PREFIX = "forward: "


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mnist_sweep.profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=at_least(1), default=20_000, help="training images in the profiled epoch (20000)")
    p.add_argument("--no-run", action="store_true", help="only the epoch profile, not the whole-run phases")
    p.add_argument("overrides", nargs="*", help=f"a run's overrides (default: {' '.join(DEFAULT_OVERRIDES)})")
    return p.parse_args()


def label_layers(*modules) -> None:
    """A profiler range around every leaf module's forward, named by its kind, so its ops are charged to it."""
    from torch.autograd.profiler import record_function

    def enter(module, _inputs):
        module._profile_range = record_function(FORWARD_PREFIX + FORWARD_KINDS.get(type(module).__name__, "other"))
        module._profile_range.__enter__()

    def leave(module, _inputs, _output):
        module._profile_range.__exit__(None, None, None)

    for root in modules:
        for module in root.modules():
            if not list(module.children()):
                module.register_forward_pre_hook(enter)
                module.register_forward_hook(leave)


def backward_kind(name: str) -> str:
    node = name.split(": ", 1)[-1]
    return next((kind for key, kind in BACKWARD_KINDS if key in node), "other")


def charge(events) -> dict[tuple[str, str], float]:
    """Microseconds per (pass, kind) from the profiler's top-level events (nested ones are inside them)."""
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for event in events:
        if event.cpu_parent is not None:
            continue
        if event.name.startswith(FORWARD_PREFIX):
            kind = event.name[len(FORWARD_PREFIX) :]
            totals[("augmentation" if kind == "augmentation" else "forward", kind)] += event.cpu_time_total
        elif event.name.startswith("autograd::engine::evaluate_function"):
            totals[("backward", backward_kind(event.name))] += event.cpu_time_total
        elif event.name.startswith("Optimizer."):
            totals[("optimizer", event.name.split("#")[-1])] += event.cpu_time_total
    return totals


def profile_epoch(overrides: list[str], images: int) -> None:
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from torch.profiler import ProfilerActivity, profile

    from mnist_sweep.config import register_configs, validate
    from mnist_sweep.data import load_data
    from mnist_sweep.engine import epoch_images, evaluate, train_one_epoch
    from mnist_sweep.runtime import prepare_model
    from mnist_sweep.train import build, build_model, build_schedule, resolve_device, steps_per_epoch

    register_configs()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        # three epochs: a warm-up, a plain one and the profiled one (a OneCycle schedule must last that long)
        extra = [f"dataset.train_limit={images}", "trainer.progress=false", "trainer.epochs=3"]
        validate(compose("config", overrides=overrides))  # the run's own settings, as the user gave them
        cfg = compose("config", overrides=[*overrides, *extra])
    settings = OmegaConf.to_object(cfg.trainer)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    device = resolve_device(settings.device)
    data = load_data(cfg.dataset, device)
    torch.manual_seed(cfg.seed)
    model = prepare_model(build_model(cfg.model), settings, device)
    optimizer = build(cfg.optimizer, "optimizer", model.parameters())
    schedule = build_schedule(cfg.scheduler, optimizer, steps_per_epoch(len(data.train), settings))
    augment = build(cfg.augmentation, "augmentation").to(device)

    def epoch() -> float:
        start = time.perf_counter()
        train_one_epoch(model, data, optimizer, schedule, augment, settings, desc="profile")
        return time.perf_counter() - start

    warm_up = epoch()  # oneDNN primitives, the allocator; with trainer.compile, the compilation
    plain = epoch()
    label_layers(model, augment)  # after the plain epoch, so that its figure carries no profiler ranges
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        profiled = epoch()
    start = time.perf_counter()
    evaluate(model, data.val, data, settings)
    val_seconds = time.perf_counter() - start

    totals = charge(prof.events())
    epoch_size = epoch_images(len(data.train), settings)
    print(f"\n== one epoch: {cfg.model.name}, {epoch_size:,} images, batch {settings.batch_size}, "
          f"{torch.get_num_threads()} threads, amp={settings.amp}")  # fmt: skip
    # Any override replaces the default experiment=fast (whose dropout is 0) rather than adding to it: say which.
    print(f"overrides: {' '.join(overrides)}; dropout {cfg.model.get('dropout', 'n/a')}")
    print(
        f"first epoch (warm-up{', compilation included' if settings.compile else ''}) {warm_up:.2f} s; "
        f"unprofiled {plain:.2f} s ({epoch_size / plain:,.0f} images/s); profiled {profiled:.2f} s"
    )
    print(f"{'pass':<14}{'kind':<22}{'ms':>9}{'share':>8}")
    profiled_us = profiled * 1e6
    for (phase, kind), us in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"{phase:<14}{kind:<22}{us / 1e3:>9.1f}{100 * us / profiled_us:>7.1f}%")
    rest = profiled_us - sum(totals.values())
    print(f"{'rest':<14}{'batching, loss, Python':<22}{rest / 1e3:>9.1f}{100 * rest / profiled_us:>7.1f}%")
    per_image_train = plain / epoch_size
    print(
        f"validation: {len(data.val):,} images in {val_seconds:.2f} s, "
        f"{100 * val_seconds / (per_image_train * 55_000 + val_seconds):.1f}% of a 55,000-image epoch plus it"
    )


def profile_run(overrides: list[str]) -> None:
    """The whole process, as a user runs it, in a scratch directory with its own MLflow store."""
    import mlflow

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CONF.parent), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(prefix="mnist_sweep_profile_") as scratch:
        imports = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import mnist_sweep.train"],
            capture_output=True, text=True, env=env, cwd=scratch, check=True,
        )  # fmt: skip
        command = [sys.executable, "-m", "mnist_sweep", *overrides, "trainer.progress=false"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=scratch)
        process_seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"mnist_sweep.profile: the run failed:\n{done.stderr[-3000:]}")
        mlflow.set_tracking_uri(f"sqlite:///{scratch}/mlflow.db")
        run = mlflow.search_runs(experiment_names=["mnist_sweep"], output_format="list")[0]
    metrics = run.data.metrics
    phases = {
        k.removeprefix("seconds_"): v
        for k, v in metrics.items()
        if k.startswith("seconds_") and k != "seconds_per_epoch"
    }
    before_run = process_seconds - metrics["wall_seconds"]
    print(f"\n== one whole run: python -m mnist_sweep {' '.join(overrides)}")
    print(f"process wall {process_seconds:.1f} s; in train() {metrics['wall_seconds']:.1f} s")
    print(f"{'phase':<34}{'s':>7}{'share':>8}")
    rows = {"start-up (Python, imports, Hydra)": before_run, **phases}
    for name, seconds in rows.items():
        print(f"{name:<34}{seconds:>7.2f}{100 * seconds / process_seconds:>7.1f}%")
    fixed = process_seconds - phases.get("training", 0) - phases.get("validation", 0)
    print(f"fixed cost (all but training and validation): {fixed:.1f} s")
    print("imports of the training code (python -X importtime, cumulative):")
    for package, seconds in import_seconds(imports.stderr).items():
        print(f"  {package:<30}{seconds:>6.2f} s")


def import_seconds(importtime: str, top: tuple[str, ...] = ("torch", "mlflow", "mnist_sweep.train")):
    cumulative = {}
    for line in importtime.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if match and match.group(2) in top:
            cumulative[match.group(2)] = int(match.group(1)) / 1e6
    return cumulative


def main() -> None:
    from mnist_sweep.errors import refused_in_one_paragraph

    args = parse_args()
    overrides = args.overrides or DEFAULT_OVERRIDES
    with refused_in_one_paragraph("mnist_sweep.profile", overrides):
        profile_epoch(overrides, args.images)
    if not args.no_run:
        profile_run(overrides)


if __name__ == "__main__":
    main()

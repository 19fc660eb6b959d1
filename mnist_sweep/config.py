"""Typed schemas for the config (Hydra checks types on every override) and the range checks types can't express.

TrainerConfig is also what the training loop takes (OmegaConf.to_object(cfg.trainer)), so a trainer knob is one
field here and nowhere else. Nothing heavy is imported: `python -m mnist_sweep --help` loads this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from mnist_sweep.errors import UserError

AMP_CHOICES = ("auto", "off", "bf16", "fp16")
MAX_TTA_SHIFT = 4
CONF = Path(__file__).resolve().parents[1] / "conf"  # the config groups, for tools that compose without @hydra.main


@dataclass
class TrainerConfig:
    """Settings of the training loop (mnist_sweep.engine)."""

    epochs: int = 15
    batch_size: int = 128
    eval_batch_size: int = 2048
    # Each epoch trains on this share of the training split, a fresh random subset every epoch; the schedule
    # (OneCycle's steps) follows. Below 1: cheaper stage-1 sweep trials, measured against full epochs with
    # `python -m mnist_sweep.calibrate --reference` (README, "Stage 1 on part of the data").
    epoch_fraction: float = 1.0
    device: str = "auto"  # auto: cuda when present, else cpu
    num_threads: int | None = None  # torch intra-op threads; None keeps torch's default (one per core)
    label_smoothing: float = 0.0
    l1_weight: float = 0.0
    grad_clip: float | None = None  # max gradient norm
    patience: int | None = None  # early stopping: epochs without a better val accuracy; None = off
    keep_best: bool = True  # test the best-validation epoch's weights rather than the last epoch's
    # false: no look at the test split at all (stage 1 of a sweep: its trials are only ranked, on validation; the
    # finalists of stage 2 each evaluate test once). test_acc is then NaN.
    evaluate_test: bool = True
    progress: bool = True  # progress bar per epoch (tqdm stays quiet anyway when output is not a terminal)
    channels_last: bool = True  # NHWC weights and activations: measured faster on CPU (oneDNN) and on CUDA
    # The project's CPU BatchNorm and Dropout kernels (mnist_sweep.batchnorm, models.Dropout; README, Performance);
    # false: torch's own nn.BatchNorm2d and nn.Dropout, same math and checkpoints.
    cpu_kernels: bool = True
    compile: bool = False  # torch.compile, torch's kernels: compiles in ~40 s, then ~2x slower than eager (README)
    ema_decay: float | None = None  # e.g. 0.999: validate, keep and test a moving average of the weights
    # Test-time augmentation (models.EvalViews): every evaluation, validation after each epoch and the one test,
    # averages each image's logits over views of it, at that many times the inference MACs; the logged MLflow model
    # averages the same views (best.pt stays the plain net's weights).
    # The left-right mirror, for mirror-symmetric classes (Fashion-MNIST, not digits):
    tta_flip: bool = False
    # For digits: the image turned by each angle (degrees), e.g. [-7, -3.5, 3.5, 7] (the rotation augmentation's
    # range), and moved tta_shift pixels right, left, down and up (4 views; 0: none). README, "Found by search".
    tta_rotations: list[float] = field(default_factory=list)
    tta_shift: int = 0
    # Knowledge distillation (mnist_sweep.distill): the model an earlier run logged, on the same dataset and split,
    # as runs:/<run_id>/model, models:/<name>/<version> or its folder; its softened predictions on each training
    # batch join the labels in the loss, with this weight and temperature.
    teacher: str | None = None
    distill_weight: float = 0.5
    distill_temperature: float = 4.0
    # auto: bf16 on CUDA, off on CPU (bf16 pays off only on CPUs with native bf16 such as AVX512-BF16, and even
    # there it is opt-in so that default results stay fp32)
    amp: str = "auto"  # or bf16, fp16, off


@dataclass
class DatasetConfig:
    name: str = MISSING
    root: str = "${oc.env:MNIST_SWEEP_DATA,data}"
    extra_dirs: list[str] = field(default_factory=list)  # also searched, after root
    download: bool = True
    val_size: int = 5000  # images held out of the training set as the validation split, fixed by split_seed
    split_seed: int = 0
    train_limit: int | None = None  # keep only the first N training images (smoke runs)
    mean: float = MISSING
    std: float = MISSING


@dataclass
class BudgetConfig:
    max_params: int | None = 20000  # the seed projects' common limit; the default sweep searches under 6789
    max_macs: int | None = None  # multiply-adds per image; a sweep's trials cost time in proportion to them


@dataclass
class TrackingConfig:
    tracking_uri: str | None = None  # None: MLflow's default, sqlite:///mlflow.db in the launch directory
    experiment: str = "mnist_sweep"
    run_name: str | None = None
    parent_run_id: str | None = None  # set by the sweeper: this run is nested under the sweep's run
    log_model: bool = True  # also log an MLflow PyTorch model that loads back with mlflow.pytorch.load_model
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Config:
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    augmentation: Any = MISSING
    dataset: DatasetConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 1
    optuna: Any = None  # filled in by the Optuna sweeper for trial jobs


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="dataset", name="dataset_schema", node=DatasetConfig)


def unknown_keys(cfg: DictConfig) -> list[str]:
    """Hydra lets `+key=value` add a key even to a typed node, where a typo would then be ignored in silence."""
    schemas = {
        "": Config,
        "trainer": TrainerConfig,
        "dataset": DatasetConfig,
        "budget": BudgetConfig,
        "tracking": TrackingConfig,
    }
    problems = []
    for node, schema in schemas.items():
        known = {f.name for f in fields(schema)}
        for key in set(cfg if not node else cfg.get(node) or {}) - known:
            name = f"{node}.{key}" if node else key
            problems.append(f"{name} is not a setting (known: {', '.join(sorted(known))})")
    return problems


def validate(cfg: DictConfig) -> None:
    """Range checks that a type alone can't express, all reported together."""
    t = cfg.trainer
    checks = [
        (t.epochs >= 1, f"trainer.epochs must be at least 1, got {t.epochs}"),
        (t.batch_size >= 1, f"trainer.batch_size must be at least 1, got {t.batch_size}"),
        (0 < t.epoch_fraction <= 1, f"trainer.epoch_fraction must be in (0, 1], got {t.epoch_fraction}"),
        (t.eval_batch_size >= 1, f"trainer.eval_batch_size must be at least 1, got {t.eval_batch_size}"),
        (0 <= t.label_smoothing < 1, f"trainer.label_smoothing must be in [0, 1), got {t.label_smoothing}"),
        (t.l1_weight >= 0, f"trainer.l1_weight must be >= 0, got {t.l1_weight}"),
        (t.grad_clip is None or t.grad_clip > 0, f"trainer.grad_clip must be > 0 or null, got {t.grad_clip}"),
        (t.patience is None or t.patience >= 1, f"trainer.patience must be >= 1 or null, got {t.patience}"),
        (t.num_threads is None or t.num_threads >= 1, f"trainer.num_threads must be >= 1 or null, got {t.num_threads}"),
        (
            t.device in ("auto", "cpu") or t.device.startswith(("cuda", "mps")),
            f"trainer.device must be auto, cpu, cuda[:N] or mps, got {t.device!r}",
        ),
        (t.ema_decay is None or 0 < t.ema_decay < 1, f"trainer.ema_decay must be in (0, 1) or null, got {t.ema_decay}"),
        (
            all(-180 <= r <= 180 and r != 0 for r in t.tta_rotations),
            "trainer.tta_rotations must be angles in degrees within [-180, 180], none of them 0 (the image itself is "
            f"always a view), got {list(t.tta_rotations)}",
        ),
        (
            0 <= t.tta_shift <= MAX_TTA_SHIFT,
            f"trainer.tta_shift must be 0 (off) to {MAX_TTA_SHIFT} pixels (a digit's frame has a 4-pixel margin; "
            f"further, strokes leave the image), got {t.tta_shift}",
        ),
        (t.amp in AMP_CHOICES, f"trainer.amp must be one of {list(AMP_CHOICES)}, got {t.amp!r}"),
        (0 < t.distill_weight <= 1, f"trainer.distill_weight must be in (0, 1], got {t.distill_weight}"),
        (t.distill_temperature > 0, f"trainer.distill_temperature must be > 0, got {t.distill_temperature}"),
        (0 <= cfg.model.get("dropout", 0) < 1, f"model.dropout must be in [0, 1), got {cfg.model.get('dropout')}"),
        (
            cfg.budget.max_params is None or cfg.budget.max_params >= 1,
            f"budget.max_params must be a positive number or null, got {cfg.budget.max_params}",
        ),
        (
            cfg.budget.max_macs is None or cfg.budget.max_macs >= 1,
            f"budget.max_macs must be a positive number or null, got {cfg.budget.max_macs}",
        ),
        (cfg.optimizer.get("lr", 1) > 0, f"optimizer.lr must be > 0, got {cfg.optimizer.get('lr')}"),
        (
            cfg.scheduler.get("interval") in ("batch", "epoch"),
            f"scheduler.interval must be batch or epoch, got {cfg.scheduler.get('interval')!r}",
        ),
    ]
    problems = [message for ok, message in checks if not ok] + unknown_keys(cfg)
    if problems:
        raise UserError("Invalid configuration: " + "; ".join(problems) + ".")

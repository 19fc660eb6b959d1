"""The training loop, readable top to bottom: batches come from tensors already on the device, are augmented and
normalised as whole batches, and the epoch and checkpoint to keep are chosen on the validation split."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from mnist_sweep.config import TrainerConfig
from mnist_sweep.data import Data, Split
from mnist_sweep.distill import distillation_loss
from mnist_sweep.errors import DivergedError
from mnist_sweep.models import PLAIN, EvalViews
from mnist_sweep.runtime import autocast


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float


@dataclass
class FitResult:
    history: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = 0.0
    best_state: dict | None = None
    train_seconds: float = 0.0
    val_seconds: float = 0.0  # evaluating the validation split after every epoch
    train_images: int = 0
    stopped_early: bool = False

    @property
    def images_per_second(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds else 0.0


class LRSchedule:
    """A torch scheduler plus when to step it: per batch (OneCycle), per epoch, or per epoch on val loss
    (ReduceLROnPlateau)."""

    def __init__(self, scheduler, interval: str) -> None:
        if interval not in ("batch", "epoch"):
            raise ValueError(f"scheduler.interval must be 'batch' or 'epoch', got {interval!r}")
        self.scheduler, self.interval = scheduler, interval

    def after_batch(self) -> None:
        if self.interval == "batch":
            self.scheduler.step()

    def after_epoch(self, val_loss: float) -> None:
        if self.interval != "epoch":
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        else:
            self.scheduler.step()


def normalise(images: torch.Tensor, mean: float, std: float, augment: nn.Module | None = None) -> torch.Tensor:
    x = images.float().div_(255)
    if augment is not None:
        x = augment(x)
    # Matches a channels_last model (trainer.channels_last); with one channel the layout change is free.
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def epoch_images(n_train: int, trainer: TrainerConfig) -> int:
    """How many training images one epoch sees: all of them, or with trainer.epoch_fraction < 1 that share of them,
    a fresh random subset every epoch (a cheap stage-1 trial that still sees nearly every image over its epochs)."""
    return max(1, round(n_train * trainer.epoch_fraction))


def shuffled_batches(
    split: Split, batch_size: int, images: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of a fresh random order of the split; with `images`, of its first `images` only (the same random
    draw either way, so epoch_fraction=1 trains exactly as before the knob existed)."""
    order = torch.randperm(len(split), device=split.labels.device)[:images]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield split.images[idx], split.labels[idx]


def l1_penalty(model: nn.Module) -> torch.Tensor:
    # Seed 000's sparsity term: weights only, not BatchNorm scales or biases.
    return sum(m.weight.abs().sum() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))


def batch_loss(logits, x, labels, trainer: TrainerConfig, teacher: nn.Module | None) -> torch.Tensor:
    """Cross-entropy with the labels; with a teacher, mixed with its softened predictions on the same batch x."""
    if teacher is None:
        return F.cross_entropy(logits.float(), labels, label_smoothing=trainer.label_smoothing)
    with torch.no_grad():
        teacher_logits = teacher(x).float()
    t = trainer
    return distillation_loss(
        logits.float(), teacher_logits, labels, t.distill_weight, t.distill_temperature, t.label_smoothing
    )


def train_one_epoch(
    model,
    data: Data,
    optimizer,
    schedule: LRSchedule,
    augment,
    trainer: TrainerConfig,
    desc: str,
    ema=None,
    teacher: nn.Module | None = None,
):
    model.train()
    device = data.train.labels.device
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    n = epoch_images(len(data.train), trainer)
    bar = tqdm(total=-(-n // trainer.batch_size), desc=desc, leave=False, disable=None if trainer.progress else True)
    for images, labels in shuffled_batches(data.train, trainer.batch_size, n):
        with autocast(device, trainer.amp):
            x = normalise(images, data.mean, data.std, augment)
            logits = model(x)
            loss = batch_loss(logits, x, labels, trainer, teacher)
        if trainer.l1_weight:
            loss = loss + trainer.l1_weight * l1_penalty(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if trainer.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), trainer.grad_clip)
        optimizer.step()
        schedule.after_batch()
        if ema is not None:
            ema.update_parameters(model)
        # Accumulate on the device; a .item() per batch would force a sync on every step.
        total_loss += loss.detach() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        bar.update()
    bar.close()
    return total_loss.item() / n, correct.item() / n


@torch.inference_mode()
def predict(
    model: nn.Module,
    split: Split,
    mean: float,
    std: float,
    batch_size: int,
    amp: str = "off",
    views: EvalViews = PLAIN,
) -> torch.Tensor:
    """Logits for the whole split, in large batches and without autograd bookkeeping; with views beyond the image
    itself (trainer.tta_*), each image's logits averaged over them."""
    model.eval()
    net = views.wrap(model)
    with autocast(split.labels.device, amp):
        chunks = [net(normalise(split.images[i : i + batch_size], mean, std)) for i in range(0, len(split), batch_size)]
    return torch.cat(chunks).float()


def evaluated_logits(model: nn.Module, split: Split, data: Data, trainer: TrainerConfig) -> torch.Tensor:
    """predict with the trainer's evaluation settings (batch size, precision, test-time views): validation and the
    one test read them here, so that a setting cannot reach one and miss the other."""
    return predict(model, split, data.mean, data.std, trainer.eval_batch_size, trainer.amp, EvalViews.of(trainer))


def evaluate(model: nn.Module, split: Split, data: Data, trainer: TrainerConfig) -> tuple[float, float]:
    logits = evaluated_logits(model, split, data, trainer)
    loss = F.cross_entropy(logits, split.labels).item()
    return loss, (logits.argmax(1) == split.labels).float().mean().item()


def weight_average(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """torch's EMA of the weights and of the BatchNorm statistics (use_buffers), updated after every step."""
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def fit(
    model: nn.Module,
    data: Data,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    augment: nn.Module | None,
    trainer: TrainerConfig,
    on_epoch_end: Callable[[EpochMetrics], None] = lambda m: None,
    teacher: nn.Module | None = None,
) -> FitResult:
    """Train for trainer.epochs, keeping the weights of the epoch with the best validation accuracy (the moving average
    of the weights instead, when trainer.ema_decay is set).

    teacher: a model whose predictions the loss also learns from (trainer.teacher; mnist_sweep.distill).
    on_epoch_end sees every epoch's metrics (MLflow logging, Optuna pruning); an exception it raises, such as
    optuna.TrialPruned, ends training and propagates. A NaN or infinite loss or accuracy raises DivergedError.
    """
    result = FitResult()
    ema = weight_average(model, trainer.ema_decay)
    judged = ema.module if ema is not None else model  # the weights that are validated and kept
    for epoch in range(1, trainer.epochs + 1):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = train_one_epoch(
            model,
            data,
            optimizer,
            schedule,
            augment,
            trainer,
            desc=f"epoch {epoch}/{trainer.epochs}",
            ema=ema,
            teacher=teacher,
        )
        result.train_seconds += time.perf_counter() - start
        result.train_images += epoch_images(len(data.train), trainer)
        val_start = time.perf_counter()
        val_loss, val_acc = evaluate(judged, data.val, data, trainer)
        result.val_seconds += time.perf_counter() - val_start
        schedule.after_epoch(val_loss)
        metrics = EpochMetrics(epoch, train_loss, train_acc, val_loss, val_acc, lr, time.perf_counter() - start)
        result.history.append(metrics)
        if val_acc > result.best_val_acc or result.best_state is None:
            result.best_epoch, result.best_val_acc = epoch, val_acc
            result.best_state = copy.deepcopy(judged.state_dict())
        on_epoch_end(metrics)  # logged first, so the diverged epoch is on record
        check_finite(metrics)
        if trainer.patience is not None and epoch - result.best_epoch >= trainer.patience:
            result.stopped_early = True
            break
    return result


def check_finite(m: EpochMetrics) -> None:
    values = {"train loss": m.train_loss, "val loss": m.val_loss, "val acc": m.val_acc}
    bad = {name: value for name, value in values.items() if not math.isfinite(value)}
    if bad:
        raise DivergedError(
            f"Training diverged at epoch {m.epoch}: {bad}. Lower optimizer.lr or set trainer.grad_clip."
        )

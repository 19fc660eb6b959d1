"""One training run: build and budget-check the model, load data, fit, test the chosen checkpoint once, and
record everything in MLflow. Everything that can fail because of a bad override fails before the MLflow run
starts, so a typo leaves no half-made run behind."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchinfo import summary

from mnist_sweep import report, tracking
from mnist_sweep.config import TrainerConfig, validate
from mnist_sweep.data import load_data
from mnist_sweep.distill import load_teacher
from mnist_sweep.engine import LRSchedule, epoch_images, evaluated_logits, fit
from mnist_sweep.errors import BudgetError, UserError
from mnist_sweep.models import IMAGE_SIZE, PLAIN, EvalViews, count_parameters
from mnist_sweep.runtime import prepare_model, warn_if_emulated

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    model_name: str
    n_params: int
    best_val_acc: float
    best_epoch: int
    epochs_run: int
    test_acc: float
    train_seconds: float
    wall_seconds: float
    run_id: str
    ui_link: str = ""

    macs: int = 0  # multiply-accumulates per image (torchinfo)
    views: EvalViews = PLAIN  # trainer.tta_*: validated and tested on these views of each image, at that many MACs
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds of each phase (Stopwatch)

    @property
    def fixed_seconds(self) -> float:
        """Everything but the training steps and validation: what a run costs on top of its epochs."""
        return sum(s for name, s in self.phases.items() if name not in ("training", "validation"))

    @property
    def epoch_seconds(self) -> float:
        return self.train_seconds / max(self.epochs_run, 1)

    def objectives(self) -> dict[str, float]:
        """What a sweep may optimise or report (hydra.sweeper.objectives, finalists.report)."""
        return {
            "val_acc": self.best_val_acc,
            "n_params": float(self.n_params),
            "macs": float(self.macs),
            "epoch_seconds": self.epoch_seconds,
            "test_acc": self.test_acc,
        }


def build(target_cfg: DictConfig, what: str, *args, **kwargs):
    """Hydra instantiate, with a constructor's complaint about a bad value turned into a one-line user error."""
    try:
        made = instantiate(target_cfg)
        return made(*args, **kwargs) if args or kwargs else made
    except (InstantiationException, ValueError, TypeError) as exc:
        cause = exc.__cause__ or exc
        raise UserError(f"Could not build the {what} from its config: {cause}") from exc


def build_model(model_cfg: DictConfig) -> torch.nn.Module:
    return build(model_cfg.net, f"model {model_cfg.name!r}")


class Stopwatch:
    """Wall seconds per phase of a run, lap by lap: the fixed cost around the epochs is a cost every sweep trial
    pays again, so each run logs it (seconds_<phase> in MLflow) and `python -m mnist_sweep.profile` prints it."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._last
        self._last = now


def check_budget(name: str, n_params: int, max_params: int | None) -> None:
    if max_params is not None and n_params > max_params:
        raise BudgetError(
            f"Model {name!r} has {n_params:,} parameters, over budget.max_params={max_params:,}; it was not "
            f"trained. Choose a smaller model or raise the budget (budget.max_params={n_params})."
        )


def measure(model: torch.nn.Module, name: str):
    """torchinfo's summary of one 28x28 image (parameters, multiply-adds, the layer table), with no effect on the
    run: its forward pass runs in eval mode (no BatchNorm statistics updated) on a forked RNG (its random input
    takes nothing from the run's random stream). Without both, a run that measured its MACs once more (under
    budget.max_macs, say) trained differently from the same recipe without that check.

    It is also the first forward pass a model makes: one whose layers do not fit the image (a crop, or valid convs
    that leave nothing to convolve) is refused here, before any data is read or any run recorded."""
    try:
        with torch.random.fork_rng(devices=[]):
            return summary(model, input_size=(1, 1, IMAGE_SIZE, IMAGE_SIZE), verbose=0, mode="eval")
    except RuntimeError as exc:  # torchinfo's own, with the layer's complaint as its cause
        cause = str(exc.__cause__ or exc).strip().splitlines()[0]
        raise UserError(
            f"Model {name!r} cannot take a {IMAGE_SIZE}x{IMAGE_SIZE} image: {cause}. Its convolutions and pools (and "
            "its crop, if any) need more pixels than that; choose fewer or padded layers or a larger crop."
        ) from None


def check_macs(name: str, macs: int, max_macs: int) -> None:
    if macs > max_macs:
        raise BudgetError(
            f"Model {name!r} needs {macs:,} multiply-adds per image, over budget.max_macs={max_macs:,}; it was not "
            f"trained. Choose a smaller model or raise the budget (budget.max_macs={macs})."
        )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.device={name} was asked for, but torch sees no CUDA device here; use auto or cpu.")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def steps_per_epoch(n_train: int, settings: TrainerConfig) -> int:
    return -(-epoch_images(n_train, settings) // settings.batch_size)


def build_schedule(cfg: DictConfig, optimizer, steps_per_epoch: int) -> LRSchedule:
    extra = {"steps_per_epoch": steps_per_epoch} if "steps_per_epoch" in cfg.build.keys() else {}  # noqa: SIM118 (`in` skips ??? keys)
    return LRSchedule(build(cfg.build, "scheduler", optimizer, **extra), cfg.interval)


def train(cfg: DictConfig, out_dir: Path, on_epoch_end=lambda metrics: None) -> RunResult:
    """The job behind `python -m mnist_sweep`. on_epoch_end lets a sweeper watch (and prune) each epoch."""
    started = time.perf_counter()
    watch = Stopwatch()
    validate(cfg)
    seed_everything(cfg.seed)
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    model = build_model(cfg.model)
    n_params = count_parameters(model)
    check_budget(cfg.model.name, n_params, cfg.budget.max_params)  # before any data is touched
    stats = measure(model, cfg.model.name)  # on the CPU, before the model is prepared (moved, compiled) to train
    if cfg.budget.max_macs is not None:
        check_macs(cfg.model.name, stats.total_mult_adds, cfg.budget.max_macs)
    device = resolve_device(cfg.trainer.device)
    warn_if_emulated(cfg.trainer.amp, device)
    tracking.check_server(cfg)
    settings: TrainerConfig = OmegaConf.to_object(cfg.trainer)
    views = EvalViews.of(settings)  # what every evaluation averages over (trainer.tta_*)
    teacher = load_teacher(settings.teacher, cfg, device) if settings.teacher else None
    watch.lap("setup")
    data = load_data(cfg.dataset, device)
    watch.lap("data")
    model = prepare_model(model, settings, device)
    optimizer = build(cfg.optimizer, "optimizer", model.parameters())
    schedule = build_schedule(cfg.scheduler, optimizer, steps_per_epoch(len(data.train), settings))
    augment = build(cfg.augmentation, "augmentation").to(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    watch.lap("setup")

    with tracking.mlflow_run(cfg) as run:
        model_summary = str(stats)
        tracking.log_config(cfg, n_params, model_summary)
        tracking.log_dataset(data)
        watch.lap("mlflow_start")
        result = fit(model, data, optimizer, schedule, augment, settings, epoch_logger(on_epoch_end), teacher)
        watch.lap("training")
        watch.phases["training"] -= result.val_seconds
        watch.phases["validation"] = result.val_seconds
        if settings.keep_best:
            model.load_state_dict(result.best_state)
        macs = int(stats.total_mult_adds)
        test_acc, test_preds = evaluate_test_once(model, data, settings)
        tracking.log_result(result, None if math.isnan(test_acc) else test_acc, n_params, macs, views.count)
        watch.lap("test")
        tracking.log_figures(result, data, test_preds)
        watch.lap("figures")
        tracking.log_checkpoint(model, out_dir, cfg.tracking.log_model, views)
        watch.lap("checkpoint")
        wall_seconds = time.perf_counter() - started
        tracking.log_timing(wall_seconds, watch.phases)

    outcome = RunResult(
        cfg.model.name,
        n_params,
        result.best_val_acc,
        result.best_epoch,
        len(result.history),
        test_acc,
        result.train_seconds,
        wall_seconds,
        run.info.run_id,
        tracking.ui_link(run),
        macs=macs,
        phases=watch.phases,
        views=views,
    )
    if cfg.get("optuna") is None:
        print_summary(outcome, result.images_per_second)
    else:  # a sweep trial: the sweep's progress view has its line; the trial's log file keeps the box
        log.info("\n%s", summary_text(outcome, result.images_per_second))
    return outcome


def epoch_logger(on_epoch_end):
    """Each epoch's metrics to MLflow and the log, then to the caller's hook (a sweeper's pruner)."""

    def log_epoch(m) -> None:
        tracking.log_epoch(m)
        log.info(
            "epoch %d: train loss %.4f acc %.2f%% | val loss %.4f acc %.2f%% | lr %.2e | %.1fs",
            m.epoch,
            m.train_loss,
            100 * m.train_acc,
            m.val_loss,
            100 * m.val_acc,
            m.lr,
            m.seconds,
        )
        on_epoch_end(m)

    return log_epoch


def evaluate_test_once(model, data, settings: TrainerConfig) -> tuple[float, torch.Tensor | None]:
    """The one and only look at the test split, on the checkpoint chosen by validation accuracy: its accuracy and
    predictions (with trainer.evaluate_test=false, none at all: NaN and None)."""
    if not settings.evaluate_test:
        return math.nan, None
    logits = evaluated_logits(model, data.test, data, settings)
    test_preds = logits.argmax(1)
    return (test_preds == data.test.labels).float().mean().item(), test_preds


def print_summary(r: RunResult, images_per_second: float) -> None:
    print(summary_text(r, images_per_second), flush=True)


def fixed_cost_text(r: RunResult) -> str:
    parts = ", ".join(f"{name} {s:.1f}" for name, s in r.phases.items() if name not in ("training", "validation"))
    return f"validation {r.phases.get('validation', 0):.1f}s; fixed cost {r.fixed_seconds:.1f}s: {parts}"


def summary_text(r: RunResult, images_per_second: float) -> str:
    n = r.views.count
    test = f"{100 * r.test_acc:.2f}% (best-validation checkpoint)" if math.isfinite(r.test_acc) else "not evaluated"
    rows = {
        "model": r.model_name,
        "parameters": f"{r.n_params:,}",
        "best val accuracy": f"{100 * r.best_val_acc:.2f}% (epoch {r.best_epoch} of {r.epochs_run})",
        "test accuracy": test,
        # how both accuracies were measured, and how the logged MLflow model evaluates
        **(
            {"evaluation": f"each image's logits averaged over {n} views: {r.views.describe()} (trainer.tta_*)"}
            if n > 1
            else {}
        ),
        "multiply-adds": f"{r.macs:,} per image" + (f", {n}x that to evaluate the {n} views" if n > 1 else ""),
        "train time": f"{r.train_seconds:.1f}s ({r.train_seconds / r.epochs_run:.1f}s/epoch, "
        f"{images_per_second:,.0f} images/s)",
        "wall time": f"{r.wall_seconds:.1f}s ({fixed_cost_text(r)})",
        "MLflow run": r.run_id,
    }
    table = report.summary_table(rows)
    return f"{table}\nIn the MLflow UI: {r.ui_link}"

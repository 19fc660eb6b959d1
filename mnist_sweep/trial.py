"""What a training job does when the Optuna sweeper launched it (cfg.optuna is set): report each epoch's
validation accuracy to its trial so the pruner can stop it, and fail fast on a diverged (NaN) run. Also the
sweeper's budget hook: count a trial's parameters from its config alone, before any data is touched."""

from __future__ import annotations

import math
from collections.abc import Callable

from omegaconf import DictConfig

from mnist_sweep.engine import EpochMetrics
from mnist_sweep.errors import UserError
from mnist_sweep.models import count_parameters
from mnist_sweep.train import build_model


class DivergedError(UserError):
    """Training produced NaN or infinite numbers: this trial failed, the sweep goes on."""


def epoch_hook(cfg: DictConfig) -> Callable[[EpochMetrics], None]:
    """mnist_sweep.train.train's on_epoch_end: a no-op for a single run, the trial's reporter in a sweep."""
    if cfg.get("optuna") is None:
        return lambda metrics: None
    # Imported here: a plain run should not need the sweeper plugin at all.
    from hydra_plugins.mnist_sweep_optuna.job import TrialLink

    link = TrialLink.connect(cfg.optuna)

    def on_epoch_end(metrics: EpochMetrics) -> None:
        check_finite(metrics)
        link.report(metrics.epoch, metrics.val_acc)

    return on_epoch_end


def check_finite(m: EpochMetrics) -> None:
    values = {"train loss": m.train_loss, "val loss": m.val_loss, "val acc": m.val_acc}
    bad = {name: value for name, value in values.items() if not math.isfinite(value)}
    if bad:
        raise DivergedError(
            f"Training diverged at epoch {m.epoch}: {bad}. Lower optimizer.lr or set trainer.grad_clip."
        )


def model_size(cfg: DictConfig) -> tuple[int, int | None]:
    """The sweeper's param_counter: (parameters of cfg.model, budget.max_params), with no data loaded."""
    return count_parameters(build_model(cfg.model)), cfg.budget.max_params

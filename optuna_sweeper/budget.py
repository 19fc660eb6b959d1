"""The parameter budget: every trial's model is counted from its composed config before any job is launched; one
over the budget is told to Optuna as infeasible (an Optuna constraint, which TPE, NSGA-II and GP learn from) and
never trained. The counting itself is the app's: `hydra.sweeper.param_counter` names a function
cfg -> (n_params, max_params or None)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from omegaconf import DictConfig

from optuna_sweeper.errors import SweepError
from optuna_sweeper.outcomes import Attr

log = logging.getLogger(__name__)

CONSTRAINT = "params_over_budget"  # n_params - max_params: feasible when <= 0
MAX_REJECTIONS_IN_A_ROW = 200  # a search space almost entirely over budget should stop, not spin


@dataclass(frozen=True)
class Size:
    n_params: int
    max_params: int | None

    @property
    def over(self) -> bool:
        return self.max_params is not None and self.n_params > self.max_params


class ParamBudget:
    def __init__(self, counter: Callable[[DictConfig], tuple[int, int | None]], rejected_value: float) -> None:
        self.counter, self.rejected_value = counter, rejected_value
        self.rejected_in_a_row = 0

    def measure(self, trial: optuna.Trial, cfg: DictConfig) -> Size:
        """Count the trial's model and record the count and the constraint on the trial. An exception from the
        counter (a knob combination the model code refuses) propagates: that trial fails."""
        size = Size(*self.counter(cfg))
        trial.set_user_attr(Attr.N_PARAMS, size.n_params)
        if size.max_params is not None:
            trial.set_constraint(CONSTRAINT, size.n_params - size.max_params)
        if not size.over:
            self.rejected_in_a_row = 0
            return size
        self.rejected_in_a_row += 1
        log.info(
            "trial %d rejected without training: %s parameters > budget %s",
            trial.number,
            f"{size.n_params:,}",
            f"{size.max_params:,}",
        )
        return size

    def rejected_values(self, objectives: list[str], n_params: int) -> list[float]:
        """What an over-budget trial is told: its real parameter count, the rejected value for anything else."""
        return [float(n_params) if name == "n_params" else self.rejected_value for name in objectives]

    def check_not_stuck(self) -> None:
        if self.rejected_in_a_row >= MAX_REJECTIONS_IN_A_ROW:
            raise SweepError(
                f"{MAX_REJECTIONS_IN_A_ROW} trials in a row were over the parameter budget. Narrow the search space "
                "in hydra.sweeper.params (fewer channels or blocks) or raise the budget."
            )

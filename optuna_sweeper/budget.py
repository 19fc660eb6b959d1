"""The parameter budget: every trial's model is counted from its composed config before any job is launched; one
over the budget is told to Optuna as infeasible (an Optuna constraint, which TPE, NSGA-II and GP learn from) and
never trained. The counting itself is the app's: `hydra.sweeper.param_counter` names a function
cfg -> (n_params, max_params or None), or (n_params, max_params, {name: (value, limit or None)}) to budget other
sizes too (mnist_sweep's adds multiply-adds per image, which set a trial's training time)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

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
    others: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # name -> (value, limit)

    def excess(self) -> dict[str, float]:
        """Each budgeted size's value minus its limit (feasible when <= 0): Optuna's constraints."""
        sizes = {"params": (self.n_params, self.max_params), **self.others}
        return {name: value - limit for name, (value, limit) in sizes.items() if limit is not None}

    @property
    def over(self) -> bool:
        return any(v > 0 for v in self.excess().values())

    def reason(self) -> str:
        sizes = {"parameters": (self.n_params, self.max_params), **self.others}
        return "; ".join(f"{v:,.0f} {k} > budget {lim:,.0f}" for k, (v, lim) in sizes.items() if lim and v > lim)


class ParamBudget:
    def __init__(self, counter: Callable[[DictConfig], tuple], rejected_value: float) -> None:
        self.counter, self.rejected_value = counter, rejected_value
        self.rejected_in_a_row = 0

    def measure(self, trial: optuna.Trial, cfg: DictConfig) -> Size:
        """Count the trial's model and record the count and the constraint on the trial. An exception from the
        counter (a knob combination the model code refuses) propagates: that trial fails."""
        size = Size(*self.counter(cfg))
        trial.set_user_attr(Attr.N_PARAMS, size.n_params)
        for name, (value, _) in size.others.items():
            trial.set_user_attr(name, value)
        for name, excess in size.excess().items():
            trial.set_constraint(CONSTRAINT if name == "params" else f"{name}_over_budget", excess)
        if not size.over:
            self.rejected_in_a_row = 0
            return size
        self.rejected_in_a_row += 1
        log.info("trial %d rejected without training: %s", trial.number, size.reason())
        return size

    def rejected_values(self, objectives: list[str], size: Size) -> list[float]:
        """What an over-budget trial is told: its real sizes (n_params, ...), the rejected value for anything else."""
        real = {"n_params": float(size.n_params), **{k: float(v) for k, (v, _) in size.others.items()}}
        return [real.get(name, self.rejected_value) for name in objectives]

    def check_not_stuck(self) -> None:
        if self.rejected_in_a_row >= MAX_REJECTIONS_IN_A_ROW:
            raise SweepError(
                f"{MAX_REJECTIONS_IN_A_ROW} trials in a row were over the budget. Narrow the search space "
                "in hydra.sweeper.params (fewer channels or blocks) or raise the budget."
            )

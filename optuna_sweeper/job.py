"""The job's side of a trial, for the app's task function. The sweeper passes `optuna={storage, study_name,
trial_id, trial_number, pruner}` as an override; the job reaches its trial through the study storage, so this works
in any process the launcher chooses:

    link = TrialLink.connect(cfg.optuna)     # only when cfg.optuna is set, i.e. the job is a sweep trial
    link.report(epoch, val_acc, last=epoch == epochs)   # raises optuna.TrialPruned when the pruner says stop
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from hydra.utils import instantiate

from optuna_sweeper.outcomes import Attr
from optuna_sweeper.storage import load_study


class TrialLink:
    """Report one value per step; raise optuna.TrialPruned when the study's pruner says so."""

    def __init__(self, trial: optuna.Trial, pruning: bool, curves: bool = True) -> None:
        """curves: record each step's value as the trial's intermediate value (learning curves in optuna-dashboard,
        and the data that calibrates a pruner), pruner or not; Optuna allows it for one objective only."""
        self.trial, self.pruning, self.curves = trial, pruning, curves

    @classmethod
    def connect(cls, optuna_cfg: Any) -> TrialLink:
        pruner = instantiate(optuna_cfg.pruner) if optuna_cfg.get("pruner") else None
        study = load_study(optuna_cfg.storage, optuna_cfg.study_name, pruner)
        # Optuna reports intermediate values for one objective only; a multi-objective study just records steps.
        single = len(study.directions) == 1
        return cls(optuna.Trial(study, int(optuna_cfg.trial_id)), pruner is not None and single, curves=single)

    @property
    def number(self) -> int:
        return self.trial.number

    def report(self, step: int, value: float, last: bool = False) -> None:
        """last: the job's final step. It is reported but never pruned: its result is finished, and pruning it
        would throw it away (Optuna's pruners do not know how many steps a trial has)."""
        self.trial.set_user_attr(Attr.EPOCHS_RUN, step)
        if not self.curves or not math.isfinite(value):
            return
        self.trial.report(value, step)
        if self.pruning and not last and self.trial.should_prune():
            raise optuna.TrialPruned(f"trial {self.trial.number} pruned after step {step} (value {value:.4f})")

"""The private attributes of Optuna and Hydra this package relies on, in one place, so that an upgrade that moves
them breaks here with a clear name instead of in the middle of the sweep logic."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from optuna.storages import BaseStorage


def set_metric_names(study: optuna.Study, names: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable in use since Optuna 3.2
        study.set_metric_names(names)


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    # The storage's key for a trial: the job reaches its trial through the storage by this id, and a trial of a
    # dead worker is requeued by it. Optuna exposes it only as _trial_id.
    return trial._trial_id


def storage_of(study: optuna.Study) -> BaseStorage:
    # Needed to set a user attr on a trial that another (perhaps dead) process holds: Study has no public way.
    return study._storage


def job_outcome(job_return: JobReturn) -> Any:
    # The job's return value, or the exception it raised: JobReturn.return_value re-raises the exception, and
    # the sweeper must look at it (optuna.TrialPruned, a user error) without raising it.
    return job_return._return_value

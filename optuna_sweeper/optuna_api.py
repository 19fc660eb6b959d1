"""The private attributes of Optuna and Hydra this package relies on, in one place, so that an upgrade that moves
them breaks here with a clear name instead of in the middle of the sweep logic."""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState


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


def ask_named(study: optuna.Study, user_attrs: dict[str, Any]) -> optuna.Trial:
    """study.ask(), but a new trial is created with user_attrs (who asked) in the same storage write. With ask() and
    then set_user_attr(), a process killed in between left a RUNNING trial that named no process, which no later
    sweep could tell from a live one (the fault drill caught it). Study has no public way to create a trial with
    attributes, so this is ask() as Optuna 5 writes it: a queued trial first, else a new one from a template. A
    queued trial turns RUNNING in one write and is named in the next (study.UNNAMED_AFTER_S covers the gap)."""
    study._thread_local.cached_all_trials = None  # as ask(): the sampler reads the storage afresh for every trial
    storage_id = study._pop_waiting_trial_id()
    if storage_id is not None:
        trial = optuna.Trial(study, storage_id)
        for key, value in user_attrs.items():
            trial.set_user_attr(key, value)
        return trial
    return optuna.Trial(study, create_running(study, user_attrs, datetime.now()))


def create_running(study: optuna.Study, user_attrs: dict[str, Any], started: datetime) -> int:
    """A new RUNNING trial with these user attrs, in one storage write; its storage id."""
    template = FrozenTrial(
        number=-1,
        state=TrialState.RUNNING,
        value=None,
        datetime_start=started,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs=dict(user_attrs),
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
    )
    return study._storage.create_new_trial(study._study_id, template_trial=template)

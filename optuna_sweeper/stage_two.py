"""Stage 2 of a sweep as the sweep command runs it: once stage 1 has settled, the finalists' runs (top-k over seeds,
finalists.py) become a trial loop of their own, and the stage-2 summary is read back from their study.

A module of its own because trials.py imports finalists.py: building the stage-2 TrialLoop inside finalists.py
would make the two import each other."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from optuna_sweeper.finalists import (
    FinalistSettings,
    finalist_study_name,
    finalists,
    open_finalist_study,
    queue_runs,
    wait_for_round,
)
from optuna_sweeper.outcomes import Attr, outcomes_by_number
from optuna_sweeper.settings import Resolved
from optuna_sweeper.space import SearchSpace
from optuna_sweeper.storage import load_study
from optuna_sweeper.study import worker_alive
from optuna_sweeper.summary import StageTwo, describe_stage_two, stage_two_summary
from optuna_sweeper.trials import TrialLoop

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


def stage_two_loop(stage_one: TrialLoop, run: Resolved, settings: FinalistSettings) -> TrialLoop:
    """The loop over stage 2's runs, after stage 1 has settled: the sweep command queues them, a worker waits until
    they are queued. Same launcher and app as stage 1; no search space, pruner or budget (the full schedule, for
    finalists that passed the budget already)."""
    study, run_two = open_finalist_study(run)
    if run.is_worker:
        jobs = wait_for_round(study, run, is_alive=worker_alive)
    else:
        jobs = queue_runs(stage_one.study, study, settings, run.sweep_id)
        log.info("Stage 2: %d runs (%s)", jobs, describe_stage_two(settings))
    loop = dataclasses.replace(
        stage_one,
        run=run_two,
        study=study,
        space=SearchSpace(),
        n_trials=jobs,
        pruner=None,  # the full schedule, never stopped early
        budget=None,  # the finalists passed the budget in stage 1
        custom_space=None,
        deadline=None,  # stage_one_minutes limits stage 1 only: the finalists are always retrained in full
        out_of_time=False,
        runs=stage_one.runs.for_study(run_two.study_name) if stage_one.runs else None,
        preset_only=True,
        subdir_prefix="final_",
        pending=[],
        returns=[],
    )
    if loop.runs and not run.is_worker:  # a run killed in an earlier command's stage 2 (mlflow_runs says how)
        loop.runs.settle_trial_runs(outcomes_by_number(study))
    return loop


def summary(run: Resolved, settings: FinalistSettings, stage_one: optuna.Study) -> StageTwo | None:
    """Stage 2's figures for the sweep's summary; None when the sweep has no stage 2 or stopped before it."""
    if not settings.top_k:
        return None
    try:
        stage_two = load_study(run.storage_url, finalist_study_name(run.study_name))
    except KeyError:  # the sweep stopped before stage 2
        return None
    maximize = run.directions[0] == "maximize"
    return stage_two_summary(finalists(stage_one, stage_two), settings, run.objectives[0], maximize)


def label(trial) -> str:
    """A stage-2 run in the progress view: which stage-1 trial it retrains, with which seed."""
    return f"trial {trial.user_attrs.get(Attr.FINALIST_OF)} seed {trial.user_attrs.get(Attr.SEED)}"

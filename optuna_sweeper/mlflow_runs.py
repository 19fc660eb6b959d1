"""MLflow for a sweep: one parent run per sweep command, one nested child run per trial. Trained trials create
their own child run in the job (the sweeper passes tracking.parent_run_id and tags as overrides, for an app whose
config has a `tracking` node that reads them); the sweeper creates the child runs of rejected trials itself and
stamps every child with the trial's final state."""

from __future__ import annotations

import copy
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
from hydra.core.override_parser.types import Transformer
from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from optuna_sweeper.budget import Size
from optuna_sweeper.errors import SweepError, one_line
from optuna_sweeper.mlflow_store import sqlite_creation_lock
from optuna_sweeper.outcomes import Outcome
from optuna_sweeper.settings import Resolved
from optuna_sweeper.space import SearchSpace, describe, override_key
from optuna_sweeper.storage import redact

log = logging.getLogger(__name__)
# MLflow 3's kind for a model-training experiment. (Its 3.17 UI still opens on the GenAI pages until the user
# switches its browser-wide toggle to "Model training": see README, MLflow.)
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def tracking_uri(tracking_cfg: Any) -> str:
    return tracking_cfg.get("tracking_uri") or mlflow.get_tracking_uri()


def sweep_params(run: Resolved, settings: Any, space: SearchSpace, pruner: dict | None, finalists: str) -> dict:
    """The sweep run's params: how the study searches, and each searched and fixed key (the MLflow UI's columns)."""
    params = {
        "study": run.study_name,
        "storage": redact(run.storage_url),
        "sampler": settings.sampler._target_,
        "pruner": (pruner or {}).get("_target_", "none"),
        "n_trials": settings.n_trials,
        "stage_one_minutes": settings.stage_one_minutes if settings.stage_one_minutes is not None else "none",
        "n_workers": run.n_workers,
        "directions": ",".join(run.directions),
        "objectives": ",".join(run.objectives),
        "custom_search_space": settings.custom_search_space or "none",
        "finalists": finalists,
    }
    params.update({f"space.{k}": describe(d) for k, d in space.distributions.items()})
    params.update({f"fixed.{override_key(k)}": v for k, v in space.fixed.items()})
    return params


def check_server(uri: str, timeout_s: float = 5.0) -> None:
    """An http(s) tracking server must answer within seconds (MLflow's client retries for minutes); any HTTP reply
    counts as an answer."""
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s)
        except urllib.error.HTTPError:
            pass
        except (OSError, ValueError) as exc:
            raise SweepError(
                f"The MLflow tracking server at {uri} does not answer ({getattr(exc, 'reason', exc)}). Start it, "
                "or fix tracking.tracking_uri; nothing was recorded."
            ) from None


FINAL_STATUS = {Outcome.INTERRUPTED: "KILLED", Outcome.FAIL: "FAILED"}  # a run of its own: FINISHED otherwise


def state_tags(outcome: Outcome) -> dict[str, str]:
    return {
        "optuna_state": outcome.value,
        "optuna_rejected": str(outcome == Outcome.REJECTED).lower(),
        "optuna_pruned": str(outcome == Outcome.PRUNED).lower(),
    }


def open_experiment(uri: str, experiment: str, attempts: int = 5) -> tuple[MlflowClient, str]:
    """Open the store (a fresh sqlite one is created under the lock that every opener takes) and the sweep's
    experiment, creating it if missing. Retried: a server may still be starting, and another process may create the
    experiment first."""
    for attempt in range(attempts):
        try:
            with sqlite_creation_lock(uri):
                client = MlflowClient(uri)
                found = client.get_experiment_by_name(experiment)
                if found is None:
                    return client, client.create_experiment(experiment, tags=EXPERIMENT_KIND)
                return client, found.experiment_id
        except Exception as exc:
            if attempt == attempts - 1:
                raise SweepError(f"Cannot use the MLflow store {uri}: {one_line(exc)}") from None
            log.info("MLflow store %s not ready (a server still starting?); retrying", uri)
            time.sleep(2 + attempt)
    raise AssertionError("unreachable")


class SweepRuns:
    def __init__(
        self, tracking_cfg: Any, study_name: str, params: dict[str, str], parent_id: str | None, sweep_id: str = ""
    ) -> None:
        """parent_id: the sweep run to join (a worker started by the sweeper); None creates one, tagged with the
        sweep command's id (host:pid) so that a later command can tell whether it is still alive."""
        self.uri = tracking_uri(tracking_cfg)
        self.study_name = study_name
        self.client, self.experiment_id = open_experiment(self.uri, tracking_cfg.get("experiment") or "Default")
        if parent_id:
            self.parent_id = parent_id
            return
        tags = {"optuna_study": study_name, "optuna_role": "sweep", "optuna_sweep_id": sweep_id}
        self.parent = self.client.create_run(self.experiment_id, run_name=f"sweep-{study_name}", tags=tags)
        self.parent_id = self.parent.info.run_id
        # One request for all params (MLflow caps a value at 6000 characters).
        self.client.log_batch(self.parent_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def for_study(self, study_name: str) -> SweepRuns:
        """The same sweep run and store, for the trials of another study of this sweep (its stage 2)."""
        other = copy.copy(self)
        other.study_name = study_name
        return other

    def job_overrides(self, trial_number: int, run_name: str = "", tags: dict[str, str] | None = None) -> list[str]:
        """What makes the job's own run a child of this sweep, tagged with its trial."""
        extra = {"optuna_study": self.study_name, "optuna_trial": str(trial_number), **(tags or {})}
        return [
            f"tracking.tracking_uri={Transformer.str(self.uri)}",
            f"tracking.parent_run_id={self.parent_id}",
            f"tracking.run_name={Transformer.str(run_name or f'trial-{trial_number}')}",
            *(f"++tracking.tags.{k}={Transformer.str(v)}" for k, v in extra.items()),
        ]

    def trial_tags(self, trial_number: int, outcome: Outcome) -> dict[str, str]:
        return {
            "mlflow.parentRunId": self.parent_id,
            "optuna_study": self.study_name,
            "optuna_trial": str(trial_number),
            **state_tags(outcome),
        }

    def log_rejected(self, trial_number: int, overrides: list[str], size: Size) -> None:
        tags = self.trial_tags(trial_number, Outcome.REJECTED)
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial_number}-rejected", tags=tags)
        params = {override_key(o): o.partition("=")[2][:6000] for o in overrides}
        self.client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
        self.client.log_metric(run.info.run_id, "n_params", size.n_params)
        for name, (value, _) in size.others.items():
            self.client.log_metric(run.info.run_id, name, value)
        self.client.set_tag(run.info.run_id, "rejection", size.reason())
        self.client.set_terminated(run.info.run_id, "FINISHED")

    def mark_trial(self, trial_number: int, outcome: Outcome) -> None:
        """Every trial ends with exactly one MLflow run in a final state. The job's run (found by its tags, whichever
        process or sweep command ran it) gets the trial's state, and ends KILLED if it is still RUNNING (its worker
        died); a trial that never reached a job (its model could not be built, or it was interrupted or surplus
        before launch) gets a run of its own."""
        query = f"tags.optuna_trial = '{trial_number}' and tags.optuna_study = '{self.study_name}'"
        runs = self.client.search_runs([self.experiment_id], query, max_results=5)
        if not runs:
            # Named for what happened, as a rejected trial's run is: in the runs table a run without metrics then
            # says why it has none ("trial-31-surplus", "trial-7-fail").
            run = self.client.create_run(
                self.experiment_id,
                run_name=f"trial-{trial_number}-{outcome.value.lower()}",
                tags=self.trial_tags(trial_number, outcome),
            )
            self.client.set_terminated(run.info.run_id, FINAL_STATUS.get(outcome, "FINISHED"))
            return
        for run in runs:
            for key, value in state_tags(outcome).items():
                self.client.set_tag(run.info.run_id, key, value)
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, "KILLED")

    def settle_trial_runs(self, outcomes: dict[int, Outcome]) -> None:
        """A process killed between finishing a trial in the study and marking its run (a recovery that requeued a
        dead worker's trial, a tell) leaves the run RUNNING or without the trial's state, or no run at all where the
        trial never reached a job, while no process will ever mark it. The study is the truth: each finished trial's
        run takes its final state, and one that has none gets its own. Trials still running or queued are left
        alone."""
        runs_of: dict[int, list] = {}
        for run in self.search_all(f"tags.optuna_study = '{self.study_name}'"):
            number = run.data.tags.get("optuna_trial", "")
            if number.isdigit():
                runs_of.setdefault(int(number), []).append(run)
        for number, outcome in sorted(outcomes.items()):
            if outcome in (Outcome.RUNNING, Outcome.WAITING):
                continue
            runs = runs_of.get(number, [])
            if not runs:
                log.warning("Trial %d, already %s in the study, had no MLflow run: one is made.", number, outcome.value)
                self.mark_trial(number, outcome)
            elif any(
                run.info.status == "RUNNING" or run.data.tags.get("optuna_state") != outcome.value for run in runs
            ):
                log.warning(
                    "The MLflow run of trial %d takes the trial's state, %s, from the study.", number, outcome.value
                )
                self.mark_trial(number, outcome)

    def search_all(self, query: str) -> list:
        """Every run of the experiment that matches, page by page (a study may hold thousands)."""
        found, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], query, max_results=1000, page_token=token)
            found += page
            token = page.token
            if not token:
                return found

    def end_dead_sweeps(self, is_dead: Callable[[str], bool]) -> None:
        """The sweep runs of earlier commands of this study that were killed hard (kill -9) end KILLED."""
        query = (
            f"tags.optuna_role = 'sweep' and tags.optuna_study = '{self.study_name}' and attributes.status = 'RUNNING'"
        )
        for run in self.client.search_runs([self.experiment_id], query, max_results=100):
            command = run.data.tags.get("optuna_sweep_id", "")
            if run.info.run_id != self.parent_id and is_dead(command):
                log.warning("The sweep run of command %s, which is gone, is marked KILLED.", command)
                self.client.set_terminated(run.info.run_id, "KILLED")

    def finish(self, status: str, metrics: dict[str, float], artifacts: list[Path]) -> None:
        for key, value in metrics.items():
            self.client.log_metric(self.parent_id, key, value)
        for path in artifacts:
            if path.exists():
                self.client.log_artifact(self.parent_id, str(path))
        self.client.set_terminated(self.parent_id, status)

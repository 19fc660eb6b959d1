"""The trial loop of one sweep process: ask Optuna for a trial, sample its overrides, check its budget, launch
the ones that may train through Hydra's launcher, and tell Optuna what became of each."""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from hydra.core.override_parser.types import Transformer
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig
from optuna.trial import TrialState

from optuna_sweeper.budget import ParamBudget, Size
from optuna_sweeper.errors import SweepError, one_line, raised_while_interrupted
from optuna_sweeper.finalists import queued_twice
from optuna_sweeper.optuna_api import ask_named, job_outcome, trial_id
from optuna_sweeper.outcomes import COUNTED, Attr, Outcome, count, outcome_of
from optuna_sweeper.settings import Resolved, worker_name
from optuna_sweeper.space import SearchSpace, sample_overrides
from optuna_sweeper.study import grid_exhausted, recover_dead_trials, requeue

if TYPE_CHECKING:  # MLflow takes seconds to import: only a sweep with MLflow on loads it (sweep.start_mlflow)
    from optuna_sweeper.mlflow_runs import SweepRuns

log = logging.getLogger(__name__)

CustomSpace = Callable[[DictConfig, optuna.Trial], dict[str, Any] | None]


@dataclass
class PendingTrial:
    """A trial asked for and not yet told."""

    trial: optuna.Trial
    overrides: list[str] = field(default_factory=list)


@dataclass
class TrialLoop:
    run: Resolved
    study: optuna.Study
    space: SearchSpace
    n_trials: int
    max_failure_rate: float
    launcher: Launcher
    compose: Callable[[list[str], str], DictConfig]  # overrides, what they are for -> the trial's config
    app_config: DictConfig  # given to the custom search space function
    pruner: dict | None
    budget: ParamBudget | None = None
    custom_space: CustomSpace | None = None
    runs: SweepRuns | None = None
    preset_only: bool = False  # a stage-2 loop: only enqueued trials with preset overrides run; none is sampled
    subdir_prefix: str = "trial_"  # the job's dir under the sweep dir
    job_extra: list[str] = field(default_factory=list)  # overrides for every job (e.g. a quieter console)
    deadline: float | None = None  # unix time past which no trial starts (hydra.sweeper.stage_one_minutes)
    out_of_time: bool = False  # this loop stopped at its deadline, short of n_trials
    launch_log: Path | None = None  # one line per launched job with all its overrides
    pending: list[PendingTrial] = field(default_factory=list)
    returns: list[JobReturn] = field(default_factory=list)
    # Only numbers Hydra's jobs (hydra.job.num); their dirs are trial_<number>, unique across all workers.
    job_idx: int = 0

    def counted(self) -> int:
        return count(self.study.get_trials(deepcopy=False)).counted

    def run_until_done(self) -> None:
        while True:
            self.recover_dead_workers()
            remaining = self.n_trials - self.counted()
            if remaining <= 0:
                return
            if grid_exhausted(self.study):
                log.info("The grid is exhausted: every combination has been tried.")
                return
            if self.deadline is not None and time.time() >= self.deadline:
                self.out_of_time = True
                log.info("Stage 1's time is up (hydra.sweeper.stage_one_minutes): no further trial starts here.")
                return
            if self.preset_only and not self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                return  # the queued runs are all taken (the ones still running belong to other processes)
            batch = [pending for _ in range(min(self.run.n_jobs, remaining)) if (pending := self.ask())]
            if batch:
                self.launch(batch)
            self.check_failures()

    def recover_dead_workers(self) -> None:
        """Queue again the trials of workers that died on this host (checked before every batch, so a live sweep
        redoes them itself), and end their MLflow runs KILLED."""
        for number in recover_dead_trials(self.study):
            if self.runs:
                self.runs.mark_trial(number, Outcome.INTERRUPTED)

    # ------------------------------------------------------------ before launch
    def ask(self) -> PendingTrial | None:
        """Ask, sample, compose and count. None when the trial was told without launching a job."""
        pending = PendingTrial(ask_named(self.study, {Attr.SWEEP: self.run.sweep_id, Attr.WORKER: worker_name()}))
        self.pending.append(pending)
        trial = pending.trial
        preset = trial.user_attrs.get(Attr.PRESET)
        if self.surplus(trial) or (self.preset_only and preset is None) or queued_twice(self.study, trial):
            # preset_only: another process took the last queued run between our look and our ask
            trial.set_user_attr(Attr.SURPLUS, True)
            self.study.tell(trial, state=TrialState.FAIL)
            self.close(pending, Outcome.SURPLUS)
            return None
        if preset is not None:  # a run queued with its overrides (stage 2): launched as it is, already budgeted
            pending.overrides = list(preset)
            trial.set_user_attr(Attr.OVERRIDES, pending.overrides)
            return pending
        pending.overrides = sample_overrides(trial, self.space) + self.custom_overrides(trial)
        trial.set_user_attr(Attr.OVERRIDES, pending.overrides)
        if self.budget is None:
            return pending
        try:
            size = self.budget.measure(trial, self.compose(pending.overrides, f"trial {trial.number}"))
        except Exception as exc:  # a value Hydra or the model code refuses: this trial fails, the sweep goes on
            self.fail(pending, f"its model could not be built: {one_line(exc)}")
            return None
        if not size.over:
            return pending
        self.reject(pending, size)
        return None

    def surplus(self, trial: optuna.Trial) -> bool:
        """Two workers may ask for the last trial at the same moment; the later trial number gives way, so the study
        holds exactly n_trials counted trials."""
        earlier = [t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number]
        return sum(outcome_of(t) in COUNTED for t in earlier) >= self.n_trials

    def custom_overrides(self, trial: optuna.Trial) -> list[str]:
        """hydra.sweeper.custom_search_space(cfg, trial). Returning None (as hydra-optuna-sweeper's extender does), each
        param it suggested becomes an override of the same name. Returning a dict (define-by-run), the dict is the
        trial's overrides and its suggested params are only search coordinates (e.g. "s2.w1" -> model.stages)."""
        if self.custom_space is None:
            return []
        declared = set(trial.params)
        extra = self.custom_space(self.app_config, trial)
        if extra is None:
            extra = {k: v for k, v in trial.params.items() if k not in declared}
        return [f"{k}={Transformer.str(v)}" for k, v in extra.items()]

    def reject(self, pending: PendingTrial, size: Size) -> None:
        trial = pending.trial
        trial.set_user_attr(Attr.REJECTED, True)
        self.study.tell(trial, self.budget.rejected_values(self.run.objectives, size))
        self.pending.remove(pending)
        if self.runs:
            self.runs.log_rejected(trial.number, pending.overrides, size)
        self.budget.check_not_stuck()

    # ------------------------------------------------------------ launch and tell
    def launch(self, batch: list[PendingTrial]) -> None:
        overrides = [pending.overrides + self.job_link(pending.trial) + self.job_extra for pending in batch]
        if self.launch_log is not None:
            self.launch_log.parent.mkdir(parents=True, exist_ok=True)
            with self.launch_log.open("a") as f:
                for pending, line in zip(batch, overrides, strict=True):
                    f.write(f"{self.run.study_name} trial {pending.trial.number}: {' '.join(line)}\n")
        returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
        self.job_idx += len(batch)
        for pending, job_return in zip(batch, returns, strict=False):
            self.tell(pending, job_return)

    def job_link(self, trial: optuna.Trial) -> list[str]:
        """The overrides that connect a job to its trial (optuna.*), its trial dir, and its MLflow parent run."""
        link = {
            "storage": self.run.storage_url,
            "study_name": self.run.study_name,
            "trial_id": trial_id(trial),
            "trial_number": trial.number,
            "pruner": self.pruner,
        }
        overrides = [f"++optuna={Transformer.str(link)}", f"hydra.sweep.subdir={self.subdir_prefix}{trial.number}"]
        if not self.runs:
            return overrides
        finalist_of = trial.user_attrs.get(Attr.FINALIST_OF)
        if finalist_of is None:
            return overrides + self.runs.job_overrides(trial.number)
        seed = trial.user_attrs.get(Attr.SEED)
        tags = {"optuna_role": "finalist", "optuna_finalist_of": str(finalist_of), "optuna_seed": str(seed)}
        return overrides + self.runs.job_overrides(trial.number, f"finalist-{finalist_of}-seed{seed}", tags)

    def tell(self, pending: PendingTrial, job_return: JobReturn) -> None:
        outcome = job_outcome(job_return)  # the exception when the job failed
        if job_return.status == JobStatus.COMPLETED:
            values, problem = objective_values(outcome, self.run.objectives, len(self.run.directions))
            if problem:
                return self.fail(pending, problem)
            pending.trial.set_user_attr(Attr.METRICS, numbers_in(outcome))
            self.study.tell(pending.trial, values)
            self.close(pending, Outcome.COMPLETE)
        elif isinstance(outcome, optuna.TrialPruned):
            self.study.tell(pending.trial, state=TrialState.PRUNED)
            log.info("trial %d pruned: %s", pending.trial.number, outcome)
            self.close(pending, Outcome.PRUNED)
        elif raised_while_interrupted(outcome):
            raise KeyboardInterrupt  # the sweep's own interrupt path: this trial, still pending, is queued again
        else:
            self.fail(pending, f"{type(outcome).__name__}: {outcome}", outcome)
        self.returns.append(job_return)

    def fail(self, pending: PendingTrial, message: str, exc: BaseException | None = None) -> None:
        pending.trial.set_user_attr(Attr.ERROR, message[:2000])
        self.study.tell(pending.trial, state=TrialState.FAIL)
        where = ""
        if exc is not None and self.launch_log is not None:  # the whole traceback, for whoever debugs the job
            with self.launch_log.open("a") as f:
                f.write(f"{self.run.study_name} trial {pending.trial.number} failed:\n")
                f.writelines(traceback.format_exception(exc))
            where = f" (traceback in {self.launch_log})"
        log.warning("trial %d failed: %s%s", pending.trial.number, message, where)
        self.close(pending, Outcome.FAIL)

    def close(self, pending: PendingTrial, outcome: Outcome) -> None:
        """The trial is told: it is no longer pending, and its MLflow run gets its final state."""
        if pending in self.pending:
            self.pending.remove(pending)
        if self.runs:
            self.runs.mark_trial(pending.trial.number, outcome)

    # ------------------------------------------------------------ stopping
    def check_failures(self) -> None:
        """max_failure_rate applies to the whole sweep command, its worker processes included."""
        trials = self.study.get_trials(deepcopy=False)
        failed = [
            t for t in trials if t.user_attrs.get(Attr.SWEEP) == self.run.sweep_id and outcome_of(t) == Outcome.FAIL
        ]
        if len(failed) > self.max_failure_rate * self.n_trials:
            last = max(failed, key=lambda t: t.datetime_complete or t.datetime_start)
            raise SweepError(
                f"Stopping the sweep: {len(failed)} trials of this sweep failed, more than "
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} of n_trials={self.n_trials}. Last error: "
                f"trial {last.number}: {last.user_attrs.get(Attr.ERROR)} Finished trials are kept in the study; fix "
                "the cause and re-run to continue."
            )

    def interrupt(self) -> None:
        """Ctrl-C: the trials in flight are marked interrupted and queued again, so a re-run redoes them."""
        for pending in list(self.pending):
            requeue(self.study, pending.trial)
            self.close(pending, Outcome.INTERRUPTED)
        log.warning("Interrupted. Re-run the same command to continue study %r.", self.run.study_name)

    def fail_pending(self, exc: BaseException) -> None:
        """The sweep stopped on an error: never leave a trial RUNNING behind."""
        for pending in list(self.pending):
            self.fail(pending, f"the sweep stopped: {type(exc).__name__}: {one_line(exc)}")


def numbers_in(outcome: Any) -> dict[str, float]:
    """The finite numbers a job returned as a dict (its objectives and whatever else it reports)."""
    if not isinstance(outcome, dict | DictConfig):
        return {}
    found = {}
    for key, value in outcome.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            found[str(key)] = number
    return found


def objective_values(outcome: Any, objectives: list[str], n_directions: int) -> tuple[list[float], str]:
    """The job's return value -> one float per direction, or a reason why it has none."""
    try:
        if isinstance(outcome, dict | DictConfig):
            values = [float(outcome[name]) for name in objectives]
        else:
            values = [float(outcome)]
    except (KeyError, TypeError, ValueError) as exc:
        return [], f"the job returned {outcome!r}, which has no {objectives} ({exc})"
    if len(values) != n_directions:
        return [], f"the job returned {len(values)} objective(s) for {n_directions} direction(s)"
    if not all(math.isfinite(v) for v in values):
        return [], f"the job returned non-finite objectives {values}"
    return values, ""

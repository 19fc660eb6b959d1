"""One vocabulary for what became of a trial, and one source of counts: the study itself.

Optuna's own states do not say everything a sweep needs: an over-budget trial is told COMPLETE (with an infeasible
constraint) but was never trained, and a trial stopped by Ctrl-C is told FAIL but is queued again. The user attrs
below record that, and `outcome_of` is the only place that decodes them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    import optuna


class Outcome(str, Enum):
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    REJECTED = "REJECTED"  # over the parameter budget: told to Optuna as infeasible, never trained
    FAIL = "FAIL"
    INTERRUPTED = "INTERRUPTED"  # stopped by Ctrl-C or a dead worker, and queued again
    SURPLUS = "SURPLUS"  # asked for by a worker when the others had already filled n_trials: never run
    RUNNING = "RUNNING"
    WAITING = "WAITING"  # queued (warm start, requeue), not started yet


class Attr:
    """The user attrs the sweeper writes on trials."""

    SWEEP = "sweep"  # the sweep command (its first process, host:pid) whose processes ran the trial
    WORKER = "worker"  # the process (host:pid) that ran it: a dead one's RUNNING trials are requeued
    OVERRIDES = "overrides"  # the trial's Hydra overrides, as launched
    N_PARAMS = "n_params"
    REJECTED = "rejected"
    INTERRUPTED = "interrupted"
    SURPLUS = "surplus"
    RETRY_OF = "retry_of"  # the number of the interrupted trial this one redoes
    WARM_START = "warm_start"  # the index of the warm-start entry it came from
    ERROR = "error"
    EPOCHS_RUN = "epochs_run"  # steps the job reported
    METRICS = "metrics"  # every number the job returned, objectives or not (e.g. a test accuracy)
    PRESET = "preset_overrides"  # an enqueued trial's overrides, launched as they are (a stage-2 finalist run)
    FINALIST_OF = "finalist_of"  # the stage-1 trial a stage-2 run retrains
    SEED = "seed"  # the seed a stage-2 run trains with
    ROUND = "finalist_round"  # on a finalist study: {sweep: the command that queued its runs, jobs: how many}


# Enqueued with a trial and carried over when it is queued again after an interruption.
DEFINING = (Attr.PRESET, Attr.FINALIST_OF, Attr.SEED)


# Listing order: finished results first, then what is still to come.
ORDER = list(Outcome)
# Trials that count towards n_trials: trained or training. Rejected ones cost nothing and interrupted ones are
# queued again, so neither counts.
COUNTED = frozenset({Outcome.COMPLETE, Outcome.PRUNED, Outcome.FAIL, Outcome.RUNNING})


def outcome_of(trial: FrozenTrial) -> Outcome:
    if trial.user_attrs.get(Attr.REJECTED):
        return Outcome.REJECTED
    if trial.user_attrs.get(Attr.INTERRUPTED):
        return Outcome.INTERRUPTED
    if trial.user_attrs.get(Attr.SURPLUS):
        return Outcome.SURPLUS
    if trial.state == TrialState.FAIL:
        return Outcome.FAIL
    return Outcome(trial.state.name)


def outcomes_by_number(study: optuna.Study) -> dict[int, Outcome]:
    """Every trial's outcome by its number, as mlflow_runs.settle_trial_runs takes them."""
    return {t.number: outcome_of(t) for t in study.get_trials(deepcopy=False)}


def is_trained(trial: FrozenTrial) -> bool:
    return outcome_of(trial) == Outcome.COMPLETE


@dataclass(frozen=True)
class Counts:
    complete: int = 0
    pruned: int = 0
    rejected: int = 0
    failed: int = 0
    interrupted: int = 0
    surplus: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def counted(self) -> int:
        return self.complete + self.pruned + self.failed + self.running

    def line(self) -> str:
        return (
            f"{self.complete} complete, {self.pruned} pruned, {self.rejected} rejected over budget (not trained), "
            f"{self.failed} failed"
        )


FIELDS = {
    Outcome.COMPLETE: "complete",
    Outcome.PRUNED: "pruned",
    Outcome.REJECTED: "rejected",
    Outcome.FAIL: "failed",
    Outcome.INTERRUPTED: "interrupted",
    Outcome.SURPLUS: "surplus",
    Outcome.RUNNING: "running",
    Outcome.WAITING: "waiting",
}


def count(trials: Iterable[FrozenTrial], **where: str) -> Counts:
    """Outcomes of the trials, or of those whose user attrs match `where` (sweep=<id>: one sweep command's,
    worker=<name>: one process's)."""
    tally = Counter(outcome_of(t) for t in trials if all(t.user_attrs.get(k) == v for k, v in where.items()))
    return Counts(**{FIELDS[outcome]: n for outcome, n in tally.items()})

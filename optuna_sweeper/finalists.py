"""Stage 2 of a sweep: the top-k trials of stage 1 (cheap, judged on validation, pruned) are retrained with the
app's full recipe (hydra.sweeper.finalists.overrides) over several seeds, and reported as mean ± sd.

The runs are the trials of a second study beside the first, "<study>.finalists", queued by the sweep command with
their overrides (user attr preset_overrides) and run by the same TrialLoop in every process of the sweep, so the
worker processes share stage 2 as they shared stage 1, a killed run is queued again like any trial, and a re-run
of the command skips the runs already done. No run of the second study informs the first one's sampler.

The winner is the finalist with the best mean of the first objective (validation: stage 2 chooses on it too); the
other returned numbers, e.g. a test accuracy the app evaluates once per run, are only reported.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_sweeper.errors import SweepError
from optuna_sweeper.optuna_api import set_metric_names
from optuna_sweeper.outcomes import Attr, Outcome, is_trained, outcome_of
from optuna_sweeper.settings import Resolved
from optuna_sweeper.space import override_key
from optuna_sweeper.storage import open_storage

log = logging.getLogger(__name__)

POLL_S = 1.0


@dataclass(frozen=True)
class FinalistSettings:
    top_k: int  # 0 turns stage 2 off
    seeds: list[int]
    seed_key: str  # the app's override for the seed, e.g. "seed"
    overrides: list[str]  # what stage 2 changes in a trial's overrides, e.g. the full schedule
    report: list[str]  # returned numbers besides the first objective, reported as mean ± sd
    warm_start: int = 0  # the best n trained warm-start trials join the finalists if the top_k leave them out

    @classmethod
    def from_config(cls, cfg) -> FinalistSettings:
        settings = cls(
            top_k=int(cfg.top_k),
            seeds=[int(s) for s in cfg.seeds],
            seed_key=str(cfg.seed_key),
            overrides=[str(o) for o in cfg.overrides],
            report=[str(r) for r in cfg.report],
            warm_start=int(cfg.get("warm_start", 0)),
        )
        if settings.top_k < 0:
            raise SweepError(f"hydra.sweeper.finalists.top_k must be 0 (no stage 2) or more, got {settings.top_k}.")
        if settings.warm_start < 0:
            raise SweepError(f"hydra.sweeper.finalists.warm_start must be 0 or more, got {settings.warm_start}.")
        if settings.top_k and not settings.seeds:
            raise SweepError("hydra.sweeper.finalists.seeds is empty: stage 2 needs at least one seed to train with.")
        if len(set(settings.seeds)) != len(settings.seeds):
            raise SweepError(f"hydra.sweeper.finalists.seeds repeats a seed: {settings.seeds}.")
        return settings


@dataclass
class Finalist:
    """A stage-1 trial and its stage-2 runs."""

    trial: FrozenTrial
    runs: list[FrozenTrial] = field(default_factory=list)  # complete stage-2 runs, one per seed at most

    def stats(self, metric: str) -> tuple[float, float] | None:
        """(mean, sd) over the seeds; sd 0 for one seed."""
        values = [run.user_attrs.get(Attr.METRICS, {}).get(metric) for run in self.runs]
        values = [v for v in values if v is not None]
        if not values:
            return None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def finalist_study_name(study_name: str) -> str:
    return f"{study_name}.finalists"


def who(settings: FinalistSettings) -> str:
    """Which stage-1 trials stage 2 retrains, in words: "top 2 (+ the best warm-start trial if not among them)"."""
    n, top = settings.warm_start, f"top {settings.top_k}"
    if not n:
        return top
    baseline = "the best warm-start trial" if n == 1 else f"the best {n} warm-start trials"
    return f"{top} (+ {baseline} if not among them)"


def choose(study: optuna.Study, top_k: int, warm_start: int = 0) -> list[FrozenTrial]:
    """The best k trained trials of stage 1 on its first objective (several objectives: from the Pareto front,
    then the rest), each architecture once: a warm-start copy that drew the same params is skipped. Then, if fewer
    than `warm_start` of them are warm-start recipes, the best trained warm-start trials left out, up to that many:
    a cheap stage 1 (fewer epochs, less data) can rank a hand-typed design below found ones that stage 2's full
    protocol ranks below it, and a baseline in stage 2 settles that with the same seeds."""
    if top_k <= 0:
        return []
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    trained = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if is_trained(t)]
    front = {t.number for t in study.best_trials if is_trained(t)} if len(study.directions) > 1 else set()
    ranked = sorted(trained, key=lambda t: (t.number not in front, -t.values[0] if maximize else t.values[0]))
    chosen, seen = [], set()
    for trial in ranked:
        if recipe(trial) not in seen:
            seen.add(recipe(trial))
            chosen.append(trial)
        if len(chosen) == top_k:
            break
    hand_typed = {recipe(t) for t in ranked if Attr.WARM_START in t.user_attrs}
    missing = warm_start - sum(recipe(t) in hand_typed for t in chosen)
    for trial in ranked:
        if missing <= 0:
            break
        if recipe(trial) in hand_typed and recipe(trial) not in seen:
            seen.add(recipe(trial))
            chosen.append(trial)
            missing -= 1
    return chosen


def recipe(trial: FrozenTrial) -> tuple[str, ...]:
    """What a trial trained, as its overrides: two trials with the same recipe are one finalist."""
    return tuple(sorted(trial.user_attrs.get(Attr.OVERRIDES, [])))


def job_overrides(trial: FrozenTrial, seed: int, settings: FinalistSettings) -> list[str]:
    """The trial's overrides with stage 2's on top (a later value for the same key replaces the earlier one: Hydra
    refuses a key given twice) and the seed."""
    merged: dict[str, str] = {}
    for override in [*trial.user_attrs.get(Attr.OVERRIDES, []), *settings.overrides, f"{settings.seed_key}={seed}"]:
        merged[override_key(override).lstrip("+~")] = override
    return list(merged.values())


def open_finalist_study(run: Resolved) -> tuple[optuna.Study, Resolved]:
    """The second study, single-objective on the first objective, and the resolved settings its loop runs with."""
    name = finalist_study_name(run.study_name)
    study = optuna.create_study(
        storage=open_storage(run.storage_url),
        study_name=name,
        direction=run.directions[0],
        sampler=optuna.samplers.RandomSampler(),  # never asked to sample: every run is queued with its overrides
        load_if_exists=True,
    )
    if not run.is_worker and study.metric_names != run.objectives[:1]:
        set_metric_names(study, run.objectives[:1])
    return study, dataclasses.replace(
        run, study_name=name, directions=run.directions[:1], objectives=run.objectives[:1]
    )


def queue_runs(stage1: optuna.Study, stage2: optuna.Study, settings: FinalistSettings, sweep_id: str) -> int:
    """The sweep command queues the (finalist, seed) runs the second study does not hold yet, then says how many
    there are, which lets its workers start. Returns that number."""
    held = {run_key(t) for t in stage2.get_trials(deepcopy=False) if holds_its_run(t)}
    wanted = [(t, seed) for t in choose(stage1, settings.top_k, settings.warm_start) for seed in settings.seeds]
    for trial, seed in wanted:
        if (trial.number, seed) not in held:
            attrs = {
                Attr.PRESET: job_overrides(trial, seed, settings),
                Attr.FINALIST_OF: trial.number,
                Attr.SEED: seed,
            }
            stage2.enqueue_trial({}, user_attrs=attrs)
    jobs = len(held | {(t.number, s) for t, s in wanted})
    stage2.set_user_attr(Attr.ROUND, {"sweep": sweep_id, "jobs": jobs})
    return jobs


def run_key(trial: optuna.Trial | FrozenTrial) -> tuple[int | None, int | None]:
    """A stage-2 run's identity: the stage-1 trial it retrains and its seed ((None, None) for a stage-1 trial)."""
    return trial.user_attrs.get(Attr.FINALIST_OF), trial.user_attrs.get(Attr.SEED)


def holds_its_run(trial: FrozenTrial) -> bool:
    """Whether a stage-2 trial stands for its run: not one given back unrun (surplus) or interrupted and queued
    again (its retry stands for it)."""
    return outcome_of(trial) not in (Outcome.SURPLUS, Outcome.INTERRUPTED)


def queued_twice(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Two sweep commands on one study (two hosts) may both queue the same stage-2 run, each before it sees the
    other's (queue_runs): the later-numbered copy of a (finalist, seed) gives way to the earlier one, unless that
    one was interrupted or given back (then this copy is the run)."""
    key = run_key(trial)
    if key[0] is None:
        return False
    return any(
        t.number < trial.number and run_key(t) == key and holds_its_run(t) for t in study.get_trials(deepcopy=False)
    )


def wait_for_round(stage2: optuna.Study, run: Resolved, is_alive: Callable[[str], bool]) -> int:
    """A worker waits until its command has queued this sweep's runs; the number of runs. Polls the storage."""
    while True:
        found = stage2.user_attrs.get(Attr.ROUND) or {}  # read from the storage on every call
        if found.get("sweep") == run.sweep_id:
            return int(found["jobs"])
        if not is_alive(run.sweep_id):
            raise SweepError(f"The sweep command {run.sweep_id} ended before it queued the stage-2 runs.")
        time.sleep(POLL_S)


def wait_until_settled(study: optuna.Study, recover: Callable[[], None]) -> None:
    """Stage 1 is over for everyone once no trial runs: the finalists are then the same in every process."""
    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        recover()  # a dead worker's trial would otherwise run forever; the caller's loop redoes it
        time.sleep(POLL_S)


def finalists(stage1: optuna.Study, stage2: optuna.Study) -> list[Finalist]:
    """Each stage-1 trial with stage-2 runs, in stage-1 order, with its complete runs."""
    by_trial: dict[int, Finalist] = {}
    numbers = {t.number: t for t in stage1.get_trials(deepcopy=False)}
    for run in stage2.get_trials(deepcopy=False):
        of = run.user_attrs.get(Attr.FINALIST_OF)
        if of not in numbers:
            continue
        finalist = by_trial.setdefault(of, Finalist(numbers[of]))
        if outcome_of(run) == Outcome.COMPLETE:
            finalist.runs.append(run)
    return list(by_trial.values())


def winner(found: list[Finalist], objective: str, maximize: bool) -> Finalist | None:
    """The best stage-2 mean of the first objective (validation), among finalists with a complete run."""
    scored = [f for f in found if f.stats(objective) is not None]
    if not scored:
        return None
    return (max if maximize else min)(scored, key=lambda f: f.stats(objective)[0])

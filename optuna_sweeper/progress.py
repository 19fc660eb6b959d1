"""One progress view for the whole sweep: the sweep command prints a line per finished trial, whichever of its
processes ran it, read from the study (the one place every worker writes to):

    [ 7/20] trial 12 COMPLETE val_acc=0.99120 n_params=5230 epochs 15 | best 0.99300 (trial 3) | 4m12s, ETA 7m30s

A background thread polls the storage, so the view needs nothing from the workers and survives their deaths.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial

from optuna_sweeper.outcomes import COUNTED, Attr, Outcome, outcome_of

log = logging.getLogger(__name__)

POLL_S = 2.0


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class Progress:
    """label: how a trial is named in its line (e.g. "trial 12", or a stage-2 run's "trial 8 seed 2"). deadline:
    unix time past which no trial starts (hydra.sweeper.stage_one_minutes); when it comes before the ETA of
    n_trials, the line says when it falls instead."""

    def __init__(
        self,
        study: optuna.Study,
        n_trials: int,
        objectives: list[str],
        label: Callable[[FrozenTrial], str] = lambda t: f"trial {t.number}",
        prefix: str = "",
        stream: TextIO | None = None,
        deadline: float | None = None,
    ) -> None:
        self.study, self.n_trials, self.objectives, self.deadline = study, n_trials, objectives, deadline
        self.label, self.prefix, self.stream = label, prefix, stream or sys.stdout
        self.maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        # Trials finished before this command started are counted, not listed.
        self.seen = {t.number for t in self.finished()}
        self.started = time.monotonic()
        self.done_here = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.loop, name="sweep-progress", daemon=True)

    def finished(self) -> list[FrozenTrial]:
        return [t for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()]

    def start(self) -> Progress:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.poll()  # the last trials, told just before the stop

    def loop(self) -> None:
        while not self.stop_event.wait(POLL_S):
            try:
                self.poll()
            except Exception as exc:  # a storage hiccup must not end the sweep: the next poll tries again
                log.debug("progress: %s", exc)

    def poll(self) -> None:
        finished = self.finished()
        new = sorted((t for t in finished if t.number not in self.seen), key=lambda t: t.datetime_complete)
        for trial in new:
            self.seen.add(trial.number)
            if outcome_of(trial) == Outcome.SURPLUS:  # asked for and given back at once: nothing happened
                continue
            if outcome_of(trial) in COUNTED:
                self.done_here += 1
            print(self.line(trial, finished), file=self.stream, flush=True)

    def line(self, trial: FrozenTrial, finished: list[FrozenTrial]) -> str:
        outcome = outcome_of(trial)
        done = sum(outcome_of(t) in COUNTED for t in finished if t.number in self.seen)
        width = len(str(self.n_trials))
        parts = [f"{self.prefix}[{done:>{width}}/{self.n_trials}] {self.label(trial)} {outcome.value}"]
        if trial.values and outcome != Outcome.REJECTED:
            parts.append(" ".join(f"{k}={v:.5g}" for k, v in zip(self.objectives, trial.values, strict=False)))
        elif trial.intermediate_values:
            step = max(trial.intermediate_values)
            parts.append(f"{self.objectives[0]}={trial.intermediate_values[step]:.5g} at step {step}")
        counted_params = trial.user_attrs.get(Attr.N_PARAMS)
        shown = {*self.objectives, *(["n_params"] if counted_params is not None else [])}
        extra = {k: v for k, v in trial.user_attrs.get(Attr.METRICS, {}).items() if k not in shown}
        parts += [f"{k}={v:.5g}" for k, v in list(extra.items())[:3]]
        if counted_params is not None and "n_params" not in self.objectives:
            parts.append(f"n_params={counted_params:,}")
        if outcome == Outcome.REJECTED:  # which budget, by how much (Optuna constraints: > 0 is violated)
            over = {k.removesuffix("_over_budget"): v for k, v in (trial.constraints or {}).items() if v > 0}
            parts.append("over budget: " + ", ".join(f"{k} by {v:,.0f}" for k, v in over.items()))
        line = " ".join(parts)
        best = self.best(finished)
        if best is not None:
            line += f" | best {best.values[0]:.5g} ({self.label(best)})"
        elapsed = time.monotonic() - self.started
        line += f" | {duration(elapsed)}"
        if self.done_here and done < self.n_trials:
            eta = elapsed / self.done_here * (self.n_trials - done)
            left = None if self.deadline is None else max(0.0, self.deadline - time.time())
            line += f", ETA {duration(eta)}" if left is None or eta <= left else f", stage 1 stops in {duration(left)}"
        return line

    def best(self, finished: list[FrozenTrial]) -> FrozenTrial | None:
        trained = [t for t in finished if outcome_of(t) == Outcome.COMPLETE and t.values]
        if not trained:
            return None
        return (max if self.maximize else min)(trained, key=lambda t: t.values[0])

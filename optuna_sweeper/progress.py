"""One progress view for the whole sweep: the sweep command prints a line per finished trial, whichever of its
processes ran it, read from the study (the one place every worker writes to):

    [ 7/20] trial 12 COMPLETE val_acc=0.99120 n_params=5230 epochs 15 | best 0.99300 (trial 3) | 4m12s, ETA 7m30s

Trials rejected over budget (never trained, a second or less each) come in bursts, up to dozens between two trained
trials where few of the sampler's draws fit. A burst gets one line, which says which budgets were exceeded and by how
much; a lone rejection keeps its own line:

    [ 1/30] trials 10-12, 14 REJECTED (4, untrained) over budget: params (4) by 2,912 to 44,050, macs (2) by ...

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
# A burst of rejections is told once no new one has come for this long (or before the next trained trial's line).
BURST_QUIET_S = 10.0


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
        self.rejections: list[FrozenTrial] = []  # the burst not told yet
        self.last_rejection = 0.0
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
        self.tell_rejections(self.finished())

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
            if outcome_of(trial) == Outcome.SURPLUS:  # asked for and given back at once: nothing happened
                self.seen.add(trial.number)
                continue
            if outcome_of(trial) == Outcome.REJECTED:
                self.seen.add(trial.number)
                self.rejections.append(trial)
                self.last_rejection = time.monotonic()
                continue
            self.tell_rejections(finished)  # the burst before this trial, counted and ranked as it stood then
            self.seen.add(trial.number)
            if outcome_of(trial) in COUNTED:
                self.done_here += 1
            print(self.line(trial, finished), file=self.stream, flush=True)
        if self.rejections and time.monotonic() - self.last_rejection >= BURST_QUIET_S:
            self.tell_rejections(finished)

    def tell_rejections(self, finished: list[FrozenTrial]) -> None:
        """One line for the burst of rejections held back (a lone one: its own line, with its size)."""
        burst, self.rejections = self.rejections, []
        if len(burst) == 1:
            print(self.line(burst[0], finished), file=self.stream, flush=True)
        elif burst:
            print(self.status(self.burst_line(burst), finished), file=self.stream, flush=True)

    def burst_line(self, burst: list[FrozenTrial]) -> str:
        exceeded: dict[str, list[float]] = {}
        for trial in burst:
            for name, excess in over_budget(trial).items():
                exceeded.setdefault(name, []).append(excess)
        by = {k: f"{min(v):,.0f}" + (f" to {max(v):,.0f}" if max(v) > min(v) else "") for k, v in exceeded.items()}
        return f"trials {number_ranges([t.number for t in burst])} REJECTED ({len(burst)}, untrained) over budget: " + (
            ", ".join(f"{k} ({len(exceeded[k])}) by {b}" for k, b in by.items())
        )

    def line(self, trial: FrozenTrial, finished: list[FrozenTrial]) -> str:
        outcome = outcome_of(trial)
        parts = [f"{self.label(trial)} {outcome.value}"]
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
        if outcome == Outcome.REJECTED:  # which budget, by how much
            parts.append("over budget: " + ", ".join(f"{k} by {v:,.0f}" for k, v in over_budget(trial).items()))
        return self.status(" ".join(parts), finished)

    def status(self, what: str, finished: list[FrozenTrial]) -> str:
        """what, between the count of trials done and the best so far, elapsed time and ETA."""
        done = sum(outcome_of(t) in COUNTED for t in finished if t.number in self.seen)
        width = len(str(self.n_trials))
        line = f"{self.prefix}[{done:>{width}}/{self.n_trials}] {what}"
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
        trained = [t for t in finished if outcome_of(t) == Outcome.COMPLETE and t.values and t.number in self.seen]
        if not trained:
            return None
        return (max if self.maximize else min)(trained, key=lambda t: t.values[0])


def over_budget(trial: FrozenTrial) -> dict[str, float]:
    """Which budgets a rejected trial exceeded, and by how much (Optuna constraints: > 0 is violated)."""
    return {k.removesuffix("_over_budget"): v for k, v in (trial.constraints or {}).items() if v > 0}


def number_ranges(numbers: list[int]) -> str:
    """[10, 11, 12, 14] -> "10-12, 14"."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)

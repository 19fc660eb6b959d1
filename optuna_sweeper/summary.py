"""A pure summary of the study at the end of a sweep: what this command's processes did, the study's totals, a
leaderboard of every trial, the best trained trial and, with several objectives, the Pareto front. Nothing here
writes or prints; publish.py does."""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial

from optuna_sweeper.finalists import Finalist, FinalistSettings, who, winner
from optuna_sweeper.outcomes import ORDER, Attr, Counts, count, is_trained, outcome_of


@dataclass
class SweepSummary:
    study_name: str
    storage: str  # redacted
    n_trials: int
    this_run: Counts
    study_total: int
    counted: int
    rows: list[dict[str, object]]  # the leaderboard, best first
    best: FrozenTrial | None
    pareto: list[dict[str, object]] = field(default_factory=list)  # several objectives only
    problems: list[str] = field(default_factory=list)  # e.g. workers that exited with an error
    notes: list[str] = field(default_factory=list)  # e.g. stage 1 stopped by its time limit
    stage_two: StageTwo | None = None

    def headline(self) -> str:
        return (
            f"Optuna study {self.study_name!r} ({self.storage}): this run {self.this_run.line()}; the study now "
            f"holds {self.study_total} trials ({self.counted} count towards n_trials={self.n_trials})."
        )

    def text(self, table_rows: int = 20) -> str:
        lines = [self.headline(), *self.notes, format_table(self.rows, limit=table_rows), *self.problems]
        if self.pareto:
            objectives = [k for k in self.pareto[0] if k not in ("trial", "params")]
            front = [f"  trial {e['trial']}: " + ", ".join(f"{k}={e[k]:.5g}" for k in objectives) for e in self.pareto]
            lines.append("Pareto front:\n" + "\n".join(front))
        if self.stage_two is not None:
            lines.append(self.stage_two.text())
        return "\n".join(lines)


@dataclass
class StageTwo:
    """The finalists' stage-2 figures beside their stage-1 ones, and the winner (best mean first objective)."""

    settings: FinalistSettings
    objective: str
    finalists: list[Finalist]
    winner: Finalist | None

    def metrics(self) -> list[str]:
        return [self.objective, *self.settings.report]

    def row(self, finalist: Finalist) -> dict[str, object]:
        figures = {f"final {m}": mean_sd(finalist.stats(m)) for m in self.metrics()}
        return {
            "trial": finalist.trial.number,
            f"stage-1 {self.objective}": round(score(finalist.trial), 5) if score(finalist.trial) is not None else None,
            **figures,
            "seeds": f"{len(finalist.runs)}/{len(self.settings.seeds)}",
            "n_params": finalist.trial.user_attrs.get(Attr.N_PARAMS),
        }

    def text(self) -> str:
        head = f"Stage 2: the {who(self.settings)} of stage 1, {describe_stage_two(self.settings)}:"
        if not self.finalists:
            return head + "\n(no trained trial to retrain)"
        table = format_table([{**self.row(f), "": ""} for f in self.finalists], limit=len(self.finalists))
        if self.winner is None:
            return f"{head}\n{table}\nNo finalist has a complete stage-2 run yet: re-run the command to finish stage 2."
        w = self.winner
        figures = ", ".join(f"{m} {mean_sd(w.stats(m))}" for m in self.metrics())
        return (
            f"{head}\n{table}\nWinner (best mean stage-2 {self.objective}): trial {w.trial.number}, "
            f"{w.trial.user_attrs.get(Attr.N_PARAMS)} params: {figures} over {len(w.runs)} seed(s)."
        )


def describe_stage_two(settings: FinalistSettings) -> str:
    seeds = ", ".join(map(str, settings.seeds))
    changes = " ".join(settings.overrides) or "the stage-1 recipe"
    return f"retrained with {changes}, seeds {seeds}"


def mean_sd(stats: tuple[float, float] | None) -> str | None:
    return None if stats is None else f"{stats[0]:.5g} ± {stats[1]:.2g}"


def stage_two_summary(
    finalists: list[Finalist], settings: FinalistSettings, objective: str, maximize: bool
) -> StageTwo:
    return StageTwo(settings, objective, finalists, winner(finalists, objective, maximize))


def summarise(
    study: optuna.Study,
    study_name: str,
    storage: str,
    n_trials: int,
    objectives: list[str],
    stage_two: StageTwo | None = None,
    **where: str,
) -> SweepSummary:
    """where: the user attrs that pick this run's trials (sweep=<id>)."""
    trials = study.get_trials(deepcopy=False)
    several = len(study.directions) > 1
    rows = leaderboard_rows(study, objectives)
    if stage_two is not None:
        rows = with_stage_two(rows, stage_two)
    return SweepSummary(
        study_name=study_name,
        storage=storage,
        n_trials=n_trials,
        this_run=count(trials, **where),
        study_total=len(trials),
        counted=count(trials).counted,
        rows=rows,
        best=best_trained(study),
        pareto=pareto_entries(study, objectives) if several else [],
        stage_two=stage_two,
    )


def with_stage_two(rows: list[dict[str, object]], stage_two: StageTwo) -> list[dict[str, object]]:
    """The finalists' stage-2 mean ± sd in columns before the params (which stay last)."""
    by_trial = {f.trial.number: f for f in stage_two.finalists}
    out = []
    for row in rows:
        finalist = by_trial.get(row["trial"])
        params = row.pop("params")
        for metric in stage_two.metrics():
            row[f"final {metric}"] = mean_sd(finalist.stats(metric)) if finalist else None
        row["params"] = params
        out.append(row)
    return out


def score(trial: FrozenTrial) -> float | None:
    """The first objective, or a pruned trial's last reported value; nothing for a rejected (untrained) trial."""
    if trial.user_attrs.get(Attr.REJECTED):
        return None
    if trial.values:
        return trial.values[0]
    if trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


def leaderboard_rows(study: optuna.Study, objectives: list[str]) -> list[dict[str, object]]:
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1

    def order(trial: FrozenTrial):
        value = score(trial)
        return ORDER.index(outcome_of(trial)), sign * value if value is not None else 0.0, trial.number

    rows = []
    for trial in sorted(study.get_trials(deepcopy=False), key=order):
        seconds = trial.duration.total_seconds() if trial.duration else None
        value = score(trial)
        rows.append(
            {
                "trial": trial.number,
                "state": outcome_of(trial).value,
                objectives[0]: None if value is None else round(value, 5),
                "n_params": trial.user_attrs.get(Attr.N_PARAMS),
                "epochs_run": trial.user_attrs.get(Attr.EPOCHS_RUN, 0),
                "seconds": None if seconds is None else round(seconds, 1),
                "params": " ".join(f"{k}={v}" for k, v in trial.params.items()) or preset_text(trial),
            }
        )
    return rows


def preset_text(trial: FrozenTrial) -> str:
    return " ".join(trial.user_attrs.get(Attr.OVERRIDES, []))


def format_table(rows: list[dict[str, object]], limit: int) -> str:
    """Columns padded to their widest cell; the last column (the params) is left ragged."""
    if not rows:
        return "(no trials)"
    columns = list(rows[0])
    cells = [[("" if row[c] is None else str(row[c])) for c in columns] for row in rows[:limit]]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns[:-1])]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns[:-1], widths, strict=False)) + "  " + columns[-1]]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1] for r in cells]
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more in leaderboard.csv")
    return "\n".join(lines)


def best_trained(study: optuna.Study) -> FrozenTrial | None:
    """Single objective: the best trained trial. Several: the Pareto trial best on the first objective."""
    several = len(study.directions) > 1
    candidates = pareto_front(study) if several else [t for t in study.get_trials(deepcopy=False) if is_trained(t)]
    if not candidates:
        return None
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    return (max if maximize else min)(candidates, key=lambda t: t.values[0])


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    # Optuna keeps only feasible trials in best_trials of a constrained study; rejected ones are infeasible.
    return [t for t in study.best_trials if is_trained(t)]


def pareto_entries(study: optuna.Study, objectives: list[str]) -> list[dict[str, object]]:
    front = sorted(pareto_front(study), key=lambda t: t.values[0])
    return [{"trial": t.number, **dict(zip(objectives, t.values, strict=False)), "params": t.params} for t in front]

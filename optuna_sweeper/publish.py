"""The end of a sweep made public: the summary printed and saved as summary.txt, the leaderboard as CSV, the
Pareto front as YAML and PNG, the best trial as best_trial.yaml (and as whatever the app's exporter writes), and
all of it logged to the sweep's MLflow run."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import yaml
from optuna.trial import FrozenTrial

from optuna_sweeper.outcomes import Attr
from optuna_sweeper.summary import SweepSummary

if TYPE_CHECKING:  # only a sweep with MLflow on imports MLflow
    from optuna_sweeper.mlflow_runs import SweepRuns

# Best trial -> the file the app's exporter wrote (e.g. a model config a single run can load).
Export = Callable[[FrozenTrial], Path]


@dataclass(frozen=True)
class BestTrial:
    """What the app's exporter is told about the best trial, besides its composed config."""

    study_name: str
    number: int
    values: dict[str, float]  # objective name -> value
    overrides: list[str]  # the trial's Hydra overrides, as launched
    n_params: int | None
    out_dir: Path | None  # hydra.sweeper.found_model_dir, if set


def best_trial(trial: FrozenTrial, study_name: str, objectives: list[str], out_dir: Path | None) -> BestTrial:
    return BestTrial(
        study_name=study_name,
        number=trial.number,
        values=dict(zip(objectives, trial.values, strict=False)),
        overrides=list(trial.user_attrs.get(Attr.OVERRIDES, [])),
        n_params=trial.user_attrs.get(Attr.N_PARAMS),
        out_dir=out_dir,
    )


def publish(
    summary: SweepSummary,
    study: optuna.Study,
    objectives: list[str],
    sweep_dir: Path,
    status: str,
    export: Export | None = None,
    runs: SweepRuns | None = None,
) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    artifacts = [write_csv(summary.rows, sweep_dir / "leaderboard.csv")]
    lines = [summary.text()]
    if summary.pareto:
        artifacts += write_pareto(summary, study, objectives, sweep_dir)
    if summary.best is not None and status == "FINISHED":
        artifacts.append(write_best_trial(summary, objectives, sweep_dir / "best_trial.yaml"))
        if export is not None:
            path = export(summary.best)
            lines.append(f"Best trial {summary.best.number} written to {path}")
            artifacts.append(path)
    text = "\n".join(lines)
    print(text, flush=True)
    (sweep_dir / "summary.txt").write_text(text + "\n")
    artifacts.append(sweep_dir / "summary.txt")
    if runs:
        runs.finish(
            "FAILED" if summary.problems and status == "FINISHED" else status, metrics(summary, objectives), artifacts
        )


def metrics(summary: SweepSummary, objectives: list[str]) -> dict[str, float]:
    counts = summary.this_run
    values = {
        "trials_complete": counts.complete,
        "trials_pruned": counts.pruned,
        "trials_rejected": counts.rejected,
        "trials_failed": counts.failed,
    }
    if summary.best is not None:
        values.update({f"best_{k}": v for k, v in zip(objectives, summary.best.values, strict=False)})
    return values


def write_csv(rows: list[dict[str, object]], path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_best_trial(summary: SweepSummary, objectives: list[str], path: Path) -> Path:
    """The best trial's values and the overrides that reproduce it, for any app."""
    best = best_trial(summary.best, summary.study_name, objectives, out_dir=None)
    record = {
        "study": best.study_name,
        "trial": best.number,
        "values": best.values,
        "n_params": best.n_params,
        "overrides": best.overrides,
    }
    path.write_text(yaml.safe_dump(record, sort_keys=False))
    return path


def write_pareto(summary: SweepSummary, study: optuna.Study, objectives: list[str], out_dir: Path) -> list[Path]:
    yaml_path = out_dir / "pareto_front.yaml"
    directions = [d.name.lower() for d in study.directions]
    front = {"study": summary.study_name, "objectives": objectives, "directions": directions, "front": summary.pareto}
    yaml_path.write_text(yaml.safe_dump(front, sort_keys=False))
    png_path = out_dir / "pareto_front.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's matplotlib plots are marked experimental
        axes = optuna.visualization.matplotlib.plot_pareto_front(study, target_names=objectives, constraints_func=None)
    axes.figure.savefig(png_path, dpi=120, bbox_inches="tight")
    axes.figure.clf()
    return [yaml_path, png_path]

"""The end of a sweep made public: the summary printed and saved as summary.txt, the leaderboard as CSV, the
Pareto front as YAML and PNG, the best trial as best_trial.yaml (and as whatever the app's exporter writes), and
all of it logged to the sweep's MLflow run."""

from __future__ import annotations

import csv
import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import yaml
from optuna.trial import FrozenTrial

from optuna_sweeper.outcomes import Attr
from optuna_sweeper.space import override_key
from optuna_sweeper.summary import SweepSummary

if TYPE_CHECKING:  # only a sweep with MLflow on imports MLflow
    from optuna_sweeper.mlflow_runs import SweepRuns


@dataclass(frozen=True)
class BestTrial:
    """What the app's exporter is told about the best trial, besides its composed config."""

    study_name: str
    number: int
    values: dict[str, float]  # objective name -> value
    overrides: list[str]  # the trial's Hydra overrides, as launched
    n_params: int | None
    out_dir: Path | None  # hydra.sweeper.export_dir, if set
    # The stage-2 winner: metric -> (mean, sd) over `seeds`, and the stage that chose it.
    final: dict[str, tuple[float, float]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)

    @property
    def chosen_by(self) -> str:
        return f"stage 2 (mean over seeds {self.seeds})" if self.final else "stage 1"


# Best trial -> the file the app's exporter wrote (e.g. a config a single run can load).
Export = Callable[[BestTrial], Path]


def best_trial(trial: FrozenTrial, study_name: str, objectives: list[str], out_dir: Path | None) -> BestTrial:
    return BestTrial(
        study_name=study_name,
        number=trial.number,
        values=dict(zip(objectives, trial.values, strict=False)),
        overrides=list(trial.user_attrs.get(Attr.OVERRIDES, [])),
        n_params=trial.user_attrs.get(Attr.N_PARAMS),
        out_dir=out_dir,
    )


def chosen(summary: SweepSummary, objectives: list[str], out_dir: Path | None) -> BestTrial | None:
    """The stage-2 winner when there is one (its stage-2 recipe, without the seed), else stage 1's best."""
    two = summary.stage_two
    if two is not None and two.winner is not None:
        w = two.winner
        seed_key = two.settings.seed_key
        overrides = [o for o in w.runs[0].user_attrs.get(Attr.OVERRIDES, []) if override_key(o).lstrip("+") != seed_key]
        return dataclasses.replace(
            best_trial(w.trial, summary.study_name, objectives, out_dir),
            overrides=overrides,
            final={m: w.stats(m) for m in two.metrics() if w.stats(m) is not None},
            seeds=[run.user_attrs.get(Attr.SEED) for run in w.runs],
        )
    if summary.best is None:
        return None
    return best_trial(summary.best, summary.study_name, objectives, out_dir)


def publish(
    summary: SweepSummary,
    study: optuna.Study,
    objectives: list[str],
    sweep_dir: Path,
    status: str,
    export: Export | None = None,
    runs: SweepRuns | None = None,
    out_dir: Path | None = None,
) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    artifacts = [write_csv(summary.rows, sweep_dir / "leaderboard.csv")]
    lines = [summary.text()]
    if summary.pareto:
        artifacts += write_pareto(summary, study, objectives, sweep_dir)
    best = chosen(summary, objectives, out_dir)
    if best is not None and status == "FINISHED":
        artifacts.append(write_best_trial(best, sweep_dir / "best_trial.yaml"))
        if export is not None:
            path = export(best)
            lines.append(f"Best trial {best.number} (chosen by {best.chosen_by}) written to {path}")
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
    two = summary.stage_two
    if two is not None and two.winner is not None:
        for metric in two.metrics():
            stats = two.winner.stats(metric)
            if stats is not None:
                values.update({f"final_{metric}_mean": stats[0], f"final_{metric}_sd": stats[1]})
    return values


def write_csv(rows: list[dict[str, object]], path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_best_trial(best: BestTrial, path: Path) -> Path:
    """The best trial's values and the overrides that reproduce it, for any app."""
    record = {
        "study": best.study_name,
        "trial": best.number,
        "chosen_by": best.chosen_by,
        "values": best.values,
        "n_params": best.n_params,
        "overrides": best.overrides,
    }
    if best.final:
        record["final"] = {m: {"mean": v[0], "sd": v[1]} for m, v in best.final.items()}
        record["seeds"] = best.seeds
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

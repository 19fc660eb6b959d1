"""The end of a sweep: a leaderboard of every trial in the study, the Pareto front of a multi-objective study, and
the best trial written as a model config that `python -m mnist_sweep model=found/<study>` retrains."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import optuna
import yaml
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "REJECTED": 2, "FAIL": 3, "INTERRUPTED": 4, "RUNNING": 5, "WAITING": 6}


def state_of(trial: FrozenTrial) -> str:
    """Optuna's state, except that an over-budget trial (COMPLETE but infeasible) reads REJECTED, and a trial
    stopped by Ctrl-C (FAIL, queued again) reads INTERRUPTED."""
    if trial.user_attrs.get("rejected"):
        return "REJECTED"
    if trial.user_attrs.get("interrupted"):
        return "INTERRUPTED"
    return trial.state.name


def is_trained(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.COMPLETE and not trial.user_attrs.get("rejected")


def score(trial: FrozenTrial) -> float | None:
    """The first objective, or a pruned trial's last reported value; nothing for a rejected (untrained) trial."""
    if trial.user_attrs.get("rejected"):
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
        return STATE_ORDER.get(state_of(trial), 9), sign * value if value is not None else 0.0, trial.number

    rows = []
    for trial in sorted(study.get_trials(deepcopy=False), key=order):
        seconds = trial.duration.total_seconds() if trial.duration else None
        value = score(trial)
        rows.append({
            "trial": trial.number,
            "state": state_of(trial),
            objectives[0]: None if value is None else round(value, 5),
            "n_params": trial.user_attrs.get("n_params"),
            "epochs_run": trial.user_attrs.get("epochs_run", 0),
            "seconds": None if seconds is None else round(seconds, 1),
            "params": " ".join(f"{k}={v}" for k, v in trial.params.items()),
        })  # fmt: skip
    return rows


def format_table(rows: list[dict[str, object]], limit: int) -> str:
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


def write_csv(rows: list[dict[str, object]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def best_trained(study: optuna.Study) -> FrozenTrial | None:
    """Single objective: the best trained trial. Several: the Pareto trial best on the first objective."""
    candidates = pareto_front(study) if len(study.directions) > 1 else [t for t in study.trials if is_trained(t)]
    if not candidates:
        return None
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    return (max if maximize else min)(candidates, key=lambda t: t.values[0])


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    # Optuna keeps only feasible trials in best_trials of a constrained study; rejected ones are infeasible.
    return [t for t in study.best_trials if is_trained(t)]


def write_pareto(study: optuna.Study, objectives: list[str], out_dir: Path) -> tuple[str, list[Path]]:
    front = sorted(pareto_front(study), key=lambda t: t.values[0])
    entries = [{"trial": t.number, **dict(zip(objectives, t.values, strict=False)), "params": t.params} for t in front]
    yaml_path = out_dir / "pareto_front.yaml"
    yaml_path.write_text(yaml.safe_dump({"study": study.study_name, "objectives": objectives,
                                         "directions": [d.name.lower() for d in study.directions],
                                         "front": entries}, sort_keys=False))  # fmt: skip
    png_path = out_dir / "pareto_front.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's matplotlib plots are marked experimental
        axes = optuna.visualization.matplotlib.plot_pareto_front(
            study, target_names=objectives, constraints_func=None
        )
    axes.figure.savefig(png_path, dpi=120, bbox_inches="tight")
    axes.figure.clf()
    lines = [f"  trial {e['trial']}: " + ", ".join(f"{k}={e[k]:.5g}" for k in objectives) for e in entries]
    return "Pareto front:\n" + ("\n".join(lines) or "  (empty)"), [yaml_path, png_path]


def file_name(study_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", study_name)


def write_found_model(cfg: DictConfig, trial: FrozenTrial, study_name: str, objectives: list[str],
                      out_dir: Path) -> Path:  # fmt: skip
    """The trial's composed model node (knobs and net, interpolations kept) as conf/model/found/<study>.yaml."""
    model = OmegaConf.to_container(cfg.model, resolve=False)
    name = file_name(study_name)
    n_params = trial.user_attrs.get("n_params")
    overrides = trial.user_attrs.get("overrides", [])
    others = [o for o in overrides if not o.split("=", 1)[0].lstrip("+~").startswith("model")]
    model.update({"name": f"found_{name}", "source": f"optuna study {study_name}, trial {trial.number}",
                  "declared_params": n_params})  # fmt: skip
    results = ", ".join(f"{k} {v:.5g}" for k, v in zip(objectives, trial.values, strict=False))
    header = (
        f"# Found by the Optuna sweep {study_name!r}, trial {trial.number}: {results}.\n"
        f"# This file holds the architecture. The trial also ran with: {' '.join(others) or '(nothing else)'}\n"
        f"# Retrain it exactly: python -m mnist_sweep model=found/{name} {' '.join(others)}\n"
    )
    path = out_dir / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(model, sort_keys=False))
    return path

"""`python -m mnist_sweep.results`: mean ± sd over seeds of the finished runs in an MLflow experiment.

Runs are grouped by their resolved config minus the seed (and the names derived from it), so three runs of the
same recipe with seed=1,2,3 form one row. Test accuracy is each run's single test evaluation of its
best-validation checkpoint.
"""

from __future__ import annotations

import argparse
import statistics

import mlflow
from mlflow.tracking import MlflowClient

PER_SEED_KEYS = ("seed", "tracking.run_name", "tracking.parent_run_id", "tracking.tags.", "optuna.")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default="mnist_sweep")
    p.add_argument("--filter", default="", help="an MLflow search filter, e.g. \"params.model_name = 'gap8k'\"")
    p.add_argument("--tracking-uri", default=None, help="default: MLflow's (sqlite:///mlflow.db here)")
    return p.parse_args()


def recipe_key(params: dict[str, str]) -> tuple:
    return tuple(sorted((k, v) for k, v in params.items() if not k.startswith(PER_SEED_KEYS)))


def mean_sd(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    mean = statistics.mean(values) * scale
    sd = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def describe(run) -> str:
    """A recipe as it was asked for: its experiment preset and the overrides that differ from it (the run's
    `recipe` and `overrides` tags), e.g. `fast trainer.amp=off`; runs logged without those tags show their model."""
    tags = run.data.tags
    if "recipe" not in tags:
        return run.data.params.get("model_name", "?")
    return " ".join(filter(None, [tags["recipe"], tags.get("overrides", "")]))


def main() -> None:
    args = parse_args()
    client = MlflowClient(tracking_uri=args.tracking_uri or mlflow.get_tracking_uri())
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"mnist_sweep.results: no experiment named {args.experiment!r} at {client.tracking_uri}")
    query = " and ".join(filter(None, ["attributes.status = 'FINISHED'", args.filter]))
    found = client.search_runs([experiment.experiment_id], query, max_results=5000)
    runs = [r for r in found if "test_acc" in r.data.metrics]
    groups: dict[tuple, list] = {}
    for run in runs:
        groups.setdefault(recipe_key(run.data.params), []).append(run)
    print(f"{'runs':>4}  {'seeds':<8}{'test acc %':>15}{'best val acc %':>16}{'s/epoch':>12}{'wall s':>11}  recipe")
    for members in groups.values():
        m = [r.data.metrics for r in members]
        seeds = ",".join(sorted(r.data.params.get("seed", "?") for r in members))
        per_epoch = [x["train_seconds"] / x["epochs_run"] for x in m]
        print(
            f"{len(members):>4}  {seeds:<8}"
            f"{mean_sd([x['test_acc'] for x in m], 100):>15}{mean_sd([x['best_val_acc'] for x in m], 100):>16}"
            f"{mean_sd(per_epoch, digits=1):>12}{mean_sd([x.get('wall_seconds', 0) for x in m], digits=0):>11}"
            f"  {describe(members[0])}"
        )


if __name__ == "__main__":
    main()

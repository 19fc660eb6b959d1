"""`python -m mnist_sweep.calibrate --study <name>`: how well does a trial's validation accuracy at epoch k rank
its final validation accuracy? The measurement behind the pruner's rungs (README, "Pruning, calibrated").

It reads the learning curves MLflow holds for the study's trials (every epoch's val_acc; trials that ran to the
last epoch only) and prints, per epoch k: Spearman's rank correlation between val_acc at k and at the end, and the
top-third recall (of the trials that end in the top third, the fraction already in the top third at epoch k; a
pruner keeping the top third at epoch k keeps exactly those). The warm-up of a OneCycle schedule shows as low
correlation in the first epochs.
"""

from __future__ import annotations

import argparse
import math

from mlflow.tracking import MlflowClient
from scipy.stats import spearmanr


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", required=True, help="the Optuna study name (MLflow tag optuna_study)")
    p.add_argument("--experiment", default="mnist_sweep")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--metric", default="val_acc")
    return p.parse_args()


def curves(client: MlflowClient, experiment: str, study: str, metric: str) -> list[list[float]]:
    """One list of per-epoch values per finished trial run, all of the longest length (complete trials)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"No MLflow experiment {experiment!r} in this store: check --experiment and --tracking-uri.")
    runs = client.search_runs([found.experiment_id], f"tags.optuna_study = '{study}'", max_results=5000)
    histories = []
    for run in runs:
        if run.info.status != "FINISHED":
            continue
        points = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, metric) if m.step > 0)
        if points:
            histories.append([v for _, v in points])
    if not histories:
        raise SystemExit(f"No finished run of study {study!r} has a {metric} history in experiment {experiment!r}.")
    length = max(len(h) for h in histories)
    return [h for h in histories if len(h) == length]


def top_recall(at_k: list[float], final: list[float], fraction: float = 1 / 3) -> float:
    n = max(1, round(len(final) * fraction))
    best_final = set(sorted(range(len(final)), key=lambda i: -final[i])[:n])
    best_at_k = set(sorted(range(len(at_k)), key=lambda i: -at_k[i])[:n])
    return len(best_final & best_at_k) / n


def table(histories: list[list[float]]) -> list[dict[str, float]]:
    final = [h[-1] for h in histories]
    rows = []
    for k in range(1, len(histories[0]) + 1):
        at_k = [h[k - 1] for h in histories]
        rho = spearmanr(at_k, final).statistic
        rows.append(
            {"epoch": k, "spearman": rho if math.isfinite(rho) else float("nan"), "recall": top_recall(at_k, final)}
        )
    return rows


def main() -> None:
    args = parse_args()
    histories = curves(MlflowClient(args.tracking_uri), args.experiment, args.study, args.metric)
    print(f"{len(histories)} complete trials of study {args.study!r}, {len(histories[0])} epochs each")
    print("| epoch k | Spearman ρ (val@k vs final) | top-third recall |")
    print("|---:|---:|---:|")
    for row in table(histories):
        print(f"| {row['epoch']} | {row['spearman']:.2f} | {row['recall']:.2f} |")


if __name__ == "__main__":
    main()

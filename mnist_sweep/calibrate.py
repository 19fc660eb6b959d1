"""`python -m mnist_sweep.calibrate --study <name>`: how well does a trial's validation accuracy at epoch k rank
its final validation accuracy? The measurement behind the pruner's rungs (README, "Pruning, calibrated").

It reads the learning curves MLflow holds for the study's trials (every epoch's val_acc; trials that ran to the
last epoch only) and prints, per epoch k: Spearman's rank correlation between val_acc at k and at the end, and the
top-third recall (of the trials that end in the top third, the fraction already in the top third at epoch k; a
pruner keeping the top third at epoch k keeps exactly those). The warm-up of a OneCycle schedule shows as low
correlation in the first epochs.

It then replays successive halving (Optuna's SuccessiveHalvingPruner rule: at each rung a trial goes on if its
value is within the best 1/reduction_factor of all values seen at that rung so far, or the best while fewer than
reduction_factor have been seen) over the same complete curves, for several rung settings: what each costs in
epochs per trial (hence trials per hour against training every trial to the end), how often the trial with the best
objective (its best validation accuracy) is among those that finish, and by how much the best finisher trails it.
The trials' order changes what async halving keeps, so each figure is an average over shuffled orders.

With `--reference <study>`, the same questions for a cheaper protocol (say `trainer.epoch_fraction=0.5`): the
study's trials are paired with the reference study's trials of the same recipe (every logged param equal but the
`--differ` keys), and each cheap curve is judged against its pair's final figures under the full protocol: does
val@k of the cheap run rank the full runs, and does halving over the cheap curves, then stage 2's top-k by the
cheap objective, keep the trial that is best under the full protocol?

`--write-replay-config <file>` writes the search config that trains those same recipes again: the reference
study's complete trials (read from its Optuna storage, `--storage`) as the warm start, plus `--set` settings as
fixed params, e.g.
    python -m mnist_sweep.calibrate --study calib-focused --storage optuna_journal.log \
        --set trainer.epoch_fraction=0.25 --write-replay-config found_configs/hparams_search/calib_replay.yaml
then, from that directory, `python -m mnist_sweep -m hydra/sweeper=optuna +hparams_search=calib_replay
hydra/sweeper/pruner=none hydra.sweeper.n_trials=<as many> hydra.sweeper.study_name=<new>` (README, "Stage 1 on a
quarter of the data").
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient
from scipy.stats import spearmanr

from mnist_sweep.errors import at_least
from mnist_sweep.halving_replay import SETTINGS, replay


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mnist_sweep.calibrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--study", required=True, help="the Optuna study name (MLflow tag optuna_study)")
    p.add_argument("--experiment", default="mnist_sweep")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--metric", default="val_acc")
    p.add_argument("--reference", help="a study of the same recipes under the full protocol, to judge against")
    p.add_argument("--reference-uri", help="its tracking URI, if another store (default: --tracking-uri)")
    p.add_argument(
        "--differ",
        nargs="*",
        default=["trainer.epoch_fraction"],
        help="params in which the two studies' protocols differ, left out when pairing recipes",
    )
    p.add_argument("--top-k", type=at_least(1), default=2, help="stage 2's finalists (hydra.sweeper.finalists.top_k)")
    p.add_argument("--write-replay-config", metavar="FILE", help="write a search config retraining --study's recipes")
    p.add_argument("--storage", default="optuna_journal.log", help="--study's Optuna storage (journal file or URL)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="fixed params of the replay config")
    p.add_argument("--search", default="mnist_family", help="the hparams_search config the replay config extends")
    return p.parse_args()


def open_store(uri: str) -> MlflowClient:
    """The tracking store to read. MLflow creates an empty sqlite store where none is; this only reads, so a missing
    file is a wrong directory or URI, refused before MLflow writes one."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise SystemExit(
            f"No MLflow store at {uri.removeprefix('sqlite:///')}: run this from the sweep's launch directory, or "
            "give its store with --tracking-uri (and --reference-uri)."
        )
    return MlflowClient(uri)


def complete_runs(client: MlflowClient, experiment: str, study: str, metric: str) -> list[tuple[dict, list[float]]]:
    """(params, per-epoch values) of every finished trial run of the longest length (complete trials)."""
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
            histories.append((run.data.params, [v for _, v in points]))
    if not histories:
        raise SystemExit(f"No finished run of study {study!r} has a {metric} history in experiment {experiment!r}.")
    length = max(len(h) for _, h in histories)
    return [(params, h) for params, h in histories if len(h) == length]


# Params that name a run or link it to its sweep (trial numbers, tags) rather than say what it trains.
BOOKKEEPING = ("tracking.", "optuna.", "model_name")


def recipe_key(params: dict[str, str], differ: list[str], keys: set[str]) -> tuple:
    return tuple((k, params.get(k)) for k in sorted(keys) if not k.startswith(BOOKKEEPING) and k not in differ)


def paired(cheap: list[tuple[dict, list[float]]], full: list[tuple[dict, list[float]]], differ: list[str]):
    """(cheap curve, full curve) per recipe that both studies trained to the end, paired on the params both log
    (a param only one side logs, e.g. a knob newer than the reference study, is one the other ran at its default
    value, and is named in `differ` when it is the difference under test)."""
    keys = set.intersection(*(set(params) for params, _ in cheap + full))
    by_recipe = {recipe_key(params, differ, keys): history for params, history in full}
    pairs = [
        (history, by_recipe[key]) for params, history in cheap if (key := recipe_key(params, differ, keys)) in by_recipe
    ]
    if len(pairs) < 3:
        raise SystemExit(
            f"Only {len(pairs)} of the study's {len(cheap)} complete trials have a complete trial of the same recipe "
            f"in the reference study (of {len(full)}): train the reference's recipes again (--write-replay-config) and "
            "check that --differ names every param the two protocols set differently."
        )
    return pairs


def top_recall(at_k: list[float], final: list[float], fraction: float = 1 / 3) -> float:
    n = max(1, round(len(final) * fraction))
    best_final = set(sorted(range(len(final)), key=lambda i: -final[i])[:n])
    best_at_k = set(sorted(range(len(at_k)), key=lambda i: -at_k[i])[:n])
    return len(best_final & best_at_k) / n


def table(histories: list[list[float]], final: list[float] | None = None) -> list[dict[str, float]]:
    """Per epoch k, how val@k ranks `final` (default: each curve's own last value)."""
    final = [h[-1] for h in histories] if final is None else final
    rows = []
    for k in range(1, len(histories[0]) + 1):
        at_k = [h[k - 1] for h in histories]
        rho = spearmanr(at_k, final).statistic
        rows.append(
            {"epoch": k, "spearman": rho if math.isfinite(rho) else float("nan"), "recall": top_recall(at_k, final)}
        )
    return rows


def replay_config(recipes: list[dict], settings: list[str], search: str, study: str) -> str:
    """A search config (hparams_search group) that queues `recipes` (Optuna params of a study's complete trials) as
    its warm start, on top of `search`, with `settings` (KEY=VALUE) as fixed params: the same recipes, trained
    again under another protocol. The warm start adapter leaves a recipe that fits the budget as it is."""
    params = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE settings (e.g. trainer.epoch_fraction=0.25), got {setting!r}.")
        params[key] = yaml.safe_load(value)
    config = {
        "defaults": [f"/hparams_search/{search}"],
        "hydra": {"sweeper": {"warm_start": recipes, "params": params}},
    }
    header = (
        "# @package _global_\n"
        f"# The {len(recipes)} recipes study {study!r} trained to the end, queued again with {' '.join(settings)}\n"
        "# (written by python -m mnist_sweep.calibrate --write-replay-config).\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def complete_recipes(storage: str, study: str) -> list[dict]:
    """The params of every trial of the study that trained to its last epoch (not pruned, not rejected)."""
    import optuna

    from optuna_sweeper.outcomes import Outcome, outcome_of
    from optuna_sweeper.storage import open_storage

    try:
        found = optuna.load_study(study_name=study, storage=open_storage(storage))
    except KeyError:
        raise SystemExit(f"No Optuna study {study!r} in {storage}: check --study and --storage.") from None
    recipes = [t.params for t in found.trials if outcome_of(t) is Outcome.COMPLETE and t.user_attrs.get("epochs_run")]
    if not recipes:
        raise SystemExit(f"Study {study!r} in {storage} has no trial that trained to the end.")
    return recipes


def main() -> None:
    args = parse_args()
    if args.write_replay_config:
        path = Path(args.write_replay_config)
        path.parent.mkdir(parents=True, exist_ok=True)
        recipes = complete_recipes(args.storage, args.study)
        path.write_text(replay_config(recipes, args.set, args.search, args.study))
        print(f"{path}: {len(recipes)} recipes of study {args.study!r}, with {' '.join(args.set) or 'no change'}")
        return
    runs = complete_runs(open_store(args.tracking_uri), args.experiment, args.study, args.metric)
    if args.reference:
        store = open_store(args.reference_uri or args.tracking_uri)
        pairs = paired(runs, complete_runs(store, args.experiment, args.reference, args.metric), args.differ)
        histories = [cheap for cheap, _ in pairs]
        final, judged = [full[-1] for _, full in pairs], [max(full) for _, full in pairs]
        best = max(range(len(pairs)), key=lambda i: judged[i])
        print(
            f"{len(pairs)} recipes trained to the end in both {args.study!r} and the reference {args.reference!r}, "
            f"{len(histories[0])} epochs each; Spearman ρ of their objectives (best val): "
            f"{spearmanr([max(h) for h in histories], judged).statistic:.2f}; the reference's best recipe ranks "
            f"{1 + sorted(range(len(pairs)), key=lambda i: -max(histories[i])).index(best)} of {len(pairs)} here"
        )
        vs = f"the reference's final {args.metric}"
    else:
        histories, final, judged = [h for _, h in runs], None, None
        print(f"{len(histories)} complete trials of study {args.study!r}, {len(histories[0])} epochs each")
        vs = "final"
    print(f"| epoch k | Spearman ρ (val@k vs {vs}) | top-third recall |")
    print("|---:|---:|---:|")
    for row in table(histories, final):
        print(f"| {row['epoch']} | {row['spearman']:.2f} | {row['recall']:.2f} |")
    print()
    print(
        "Successive halving replayed on these curves (1,000 shuffled orders), then stage 2's top "
        f"{args.top_k} finishers; 'best' is the best recipe {'under the reference' if judged else 'here'}:"
    )
    print(
        "| min_resource | reduction_factor | rungs | epochs per trial | trials/hour vs no pruning "
        f"| best trial finishes | regret (points of val) | best in the top {args.top_k} | its regret |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for min_resource, factor in SETTINGS:
        r = replay(histories, min_resource, factor, judged=judged, top_k=args.top_k)
        print(
            f"| {min_resource} | {factor} | {', '.join(map(str, r.rungs))} | {r.epochs_per_trial:.1f} | "
            f"{r.speedup:.2f}x | {r.best_finishes:.0%} | {100 * r.regret:.2f} | {r.best_chosen:.0%} | "
            f"{100 * r.chosen_regret:.2f} |"
        )


if __name__ == "__main__":
    main()

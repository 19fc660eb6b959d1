"""mnist_sweep.calibrate: the rank table and the successive-halving replay behind the pruner's rungs."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from mnist_sweep.calibrate import main, open_store, paired, table, top_recall
from mnist_sweep.halving_replay import halving_stops, replay, rungs
from optuna_sweeper.storage import open_storage

from .helpers import compose_config


def curves(n: int, epochs: int, seed: int) -> list[list[float]]:
    """Noisy rising learning curves of different heights."""
    rng = random.Random(seed)
    histories = []
    for _ in range(n):
        height = rng.uniform(0.8, 0.99)
        histories.append([height * (1 - 0.5 ** (e + 1)) + rng.gauss(0, 0.01) for e in range(epochs)])
    return histories


def test_rungs_never_include_the_last_epoch():
    assert rungs(2, 3, 15) == [2, 6]
    assert rungs(1, 3, 15) == [1, 3, 9]
    assert rungs(1, 2, 8) == [1, 2, 4]


@pytest.mark.parametrize("min_resource,factor", [(1, 2), (1, 3), (2, 3), (3, 3)])
def test_the_replay_stops_each_trial_where_optunas_pruner_does(min_resource, factor):
    """Trials run one after the other through Optuna's own SuccessiveHalvingPruner, each reporting its curve and
    never pruned at its last epoch (as mnist_sweep.trial's reporter does), stop at the epochs the replay says."""
    histories = curves(40, 15, seed=min_resource * 10 + factor)
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=min_resource, reduction_factor=factor, min_early_stopping_rate=0
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    stops = []
    for history in histories:
        trial = study.ask()
        stop = len(history)
        for epoch, value in enumerate(history, 1):
            trial.report(value, epoch)
            if epoch < len(history) and trial.should_prune():
                stop = epoch
                break
        study.tell(
            trial,
            max(history[:stop]) if stop == len(history) else None,
            state=optuna.trial.TrialState.COMPLETE if stop == len(history) else optuna.trial.TrialState.PRUNED,
        )
        stops.append(stop)
    assert halving_stops(histories, min_resource, factor) == stops
    assert len(set(stops)) > 1  # the curves exercise pruning at all


def test_replay_counts_cost_and_whether_the_best_trial_survives():
    # Curves that rank the same at every epoch: halving keeps the best trial in every order, at no regret.
    ordered = [[0.5 + 0.01 * i + 0.001 * e for e in range(15)] for i in range(12)]
    r = replay(ordered, 2, 3, orders=200)
    assert r.rungs == [2, 6] and r.best_finishes == 1.0 and r.regret == 0.0
    assert 2 <= r.epochs_per_trial < 15 and r.speedup == pytest.approx(15 / r.epochs_per_trial)
    # A late bloomer, last at every rung and best at the end, survives only the orders that run it before others
    # reach its rungs (async halving promotes the best of fewer than reduction_factor); in every other order it is
    # pruned and the regret is what it would have won.
    bloomer = [0.1] * 14 + [0.99]
    r = replay([*ordered, bloomer], 2, 3, orders=200)
    assert 0 < r.best_finishes < 0.25
    assert r.regret == pytest.approx((1 - r.best_finishes) * (0.99 - max(max(h) for h in ordered)))


def test_rank_table_and_recall():
    histories = [[0.1 * i, 0.2 * i] for i in range(1, 7)]
    rows = table(histories)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(row["spearman"] == pytest.approx(1.0) and row["recall"] == 1.0 for row in rows)
    assert top_recall([3, 2, 1, 0, 0, 0], [0, 0, 0, 1, 2, 3]) == 0.0


def test_replay_judged_by_a_reference_counts_stage_twos_picks():
    """Cheap curves that rank the recipes the other way round from the full protocol: stage 2's top 2 follow the
    cheap ranking, so without pruning (no rung before epoch 15) the recipe best under the full protocol is never
    picked, and the regret is the full-protocol gap between it and the best of the picks. With pruning it is
    picked only when it finishes among few (an early trial of async halving), never more often than it finishes."""
    cheap = [[0.5 + 0.01 * i + 0.001 * e for e in range(15)] for i in range(12)]
    full = [0.99 - 0.01 * i for i in range(12)]  # recipe 0 is the best under the full protocol
    unpruned = replay(cheap, 15, 3, orders=100, judged=full, top_k=2)
    assert unpruned.rungs == [] and unpruned.best_finishes == 1.0
    assert unpruned.best_chosen == 0.0 and unpruned.chosen_regret == pytest.approx(full[0] - full[10])
    pruned = replay(cheap, 4, 3, orders=100, judged=full, top_k=2)
    assert pruned.best_chosen <= pruned.best_finishes < 0.5
    agreeing = replay(cheap, 4, 3, orders=100, judged=[0.9 + 0.001 * i for i in range(12)], top_k=2)
    assert agreeing.best_chosen == 1.0 and agreeing.chosen_regret == 0.0 and agreeing.best_finishes == 1.0


def test_runs_pair_on_their_recipe_but_for_the_protocol_and_bookkeeping():
    def run(lr: str, fraction: str | None, trial: str, value: float):
        params = {"optimizer.lr": lr, "model.ch1": "8", "tracking.tags.optuna_trial": trial, "optuna.trial": trial}
        if fraction is not None:
            params["trainer.epoch_fraction"] = fraction
        return params, [value, value + 0.01]

    full = [run("0.1", None, "3", 0.9), run("0.2", None, "4", 0.8), run("0.3", None, "5", 0.7)]
    cheap = [run("0.3", "0.5", "0", 0.6), run("0.1", "0.5", "1", 0.85), run("0.2", "0.5", "2", 0.75)]
    pairs = paired(cheap, full, differ=["trainer.epoch_fraction"])
    assert [(c[0], f[0]) for c, f in pairs] == [(0.6, 0.7), (0.85, 0.9), (0.75, 0.8)]
    with pytest.raises(SystemExit, match="Only 0 of the study's 3"):
        paired(cheap, [run("0.4", None, "9", 0.9)] * 3, differ=["trainer.epoch_fraction"])


def test_a_replay_config_queues_a_studys_complete_recipes_again_under_another_setting(tmp_path, monkeypatch):
    """--write-replay-config: the study's trials that trained to the end (not the pruned, not the rejected) become
    the warm start of a search config in the launch directory's found_configs, which Hydra composes on top of the
    default space with the --set settings as fixed params."""
    storage = str(tmp_path / "optuna_journal.log")
    study = optuna.create_study(study_name="calib", storage=open_storage(storage), direction="maximize")
    recipes = [{"s1.w1": 8, "optimizer.lr": 0.1}, {"s1.w1": 6, "optimizer.lr": 0.05}, {"s1.w1": 4, "optimizer.lr": 0.2}]
    dists = {"s1.w1": IntDistribution(2, 16), "optimizer.lr": FloatDistribution(0.01, 0.3)}
    attrs = [{"epochs_run": 15}, {"epochs_run": 4}, {"rejected": "over budget"}]
    states = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    for params, user_attrs, state in zip(recipes, attrs, states, strict=True):
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                user_attrs=user_attrs,
                state=state,
                value=0.9 if state == TrialState.COMPLETE else None,
            )
        )
    monkeypatch.chdir(tmp_path)
    target = "found_configs/hparams_search/calib_replay.yaml"
    argv = ["calibrate", "--study", "calib", "--storage", storage, "--set", "trainer.epoch_fraction=0.25"]
    monkeypatch.setattr("sys.argv", [*argv, "--write-replay-config", target])
    main()
    cfg = compose_config("hydra/sweeper=optuna", "+hparams_search=calib_replay", with_hydra=True).hydra.sweeper
    assert [dict(entry) for entry in cfg.warm_start] == recipes[:1]
    assert cfg.params["trainer.epoch_fraction"] == 0.25
    assert cfg.params["optimizer.lr"] == "tag(log, interval(0.03, 0.3))"  # the rest of the default space
    monkeypatch.setattr("sys.argv", [*argv[:2], "nope", *argv[3:], "--write-replay-config", target])
    with pytest.raises(SystemExit, match="No Optuna study 'nope'"):
        main()


def test_a_missing_store_is_refused_before_mlflow_creates_one(tmp_path, monkeypatch):
    """Run from the wrong directory, calibrate only reads: it says where it looked and leaves no empty mlflow.db."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="No MLflow store at mlflow.db: run this from the sweep's launch directory"):
        open_store("sqlite:///mlflow.db")
    assert not list(tmp_path.iterdir())

"""Search spaces as an app config group (conf/hparams_search/), and sweep configs written for the released
hydra-optuna-sweeper in lightning-hydra-template's style: their params are searched alone, their keys keep their
meaning, and where one works differently the sweep says so in one line. Real app, real MNIST slice."""

from __future__ import annotations

import textwrap

import optuna
import pytest
from mlflow.tracking import MlflowClient

from optuna_sweeper.storage import open_storage

from .helpers import compose_config, run_cli

STUDY = "mnist_sweep-max_val_acc"

# As lightning-hydra-template's configs/hparams_search/mnist_optuna.yaml is written (with this app's keys).
LIGHTNING_STYLE = """\
    # @package _global_
    defaults:
      - override /hydra/sweeper: optuna

    hydra:
      mode: "MULTIRUN"
      sweeper:
        storage: null
        study_name: null
        n_jobs: 1
        direction: maximize
        n_trials: 20
        max_failure_rate: 0.0
        custom_search_space: null
        sampler:
          _target_: optuna.samplers.TPESampler
          seed: 1234
          n_startup_trials: 10
        params:
          optimizer.lr: interval(0.01, 0.1)
          trainer.batch_size: choice(64, 128)
"""


def sweep_run(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist_sweep")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("optuna_role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return experiment, parent, children


def queued_sweep(tmp_path, *overrides):
    """A sweep of n_trials=0 in tmp_path: it logs its search and queues its warm start, and trains nothing."""
    result = run_cli(
        "-m", "hydra/sweeper=optuna", *overrides, "hydra.sweeper.n_trials=0", "hydra.sweeper.n_workers=1", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_run(tmp_path)


def test_the_optuna_sweeper_alone_searches_the_apps_default_space(tmp_path):
    experiment, parent, _ = queued_sweep(tmp_path)
    params = parent.data.params
    assert params["fixed.hparams_search"] == "default"
    # The default fixes the recipe at the seeds' (hparams_search/mnist_architecture) and searches architectures.
    assert (params["fixed.optimizer.lr"], params["fixed.trainer.batch_size"], params["fixed.augmentation"]) == (
        "0.1",
        "128",
        "rotate",
    )
    assert not {"space.optimizer.lr", "space.trainer.batch_size", "space.augmentation"} & set(params)
    assert params["custom_search_space"] == "mnist_sweep.search_space.focused_space"  # the define-by-run half
    assert params["finalists"] == "top 2 (+ the best warm-start trial if not among them), seeds [2, 3, 4]"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    study = optuna.load_study(study_name=STUDY, storage=open_storage(str(tmp_path / "optuna_journal.log")))
    # The space's warm start (gap8k and pool7k, exactly), queued for the first trials; their recipe keys, fixed at
    # the same values, left to the fixed params.
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.WAITING] * 2
    assert not {"optimizer.lr", "augmentation"} & set(study.trials[0].system_attrs["fixed_params"])


def test_the_family_search_searches_the_recipe_too(tmp_path):
    _, parent, _ = queued_sweep(tmp_path, "+hparams_search=mnist_family")
    assert {"space.optimizer.lr", "space.trainer.batch_size", "space.augmentation"} <= set(parent.data.params)


@pytest.mark.parametrize(
    "choice,sampler,pruner",
    [
        ([], "optuna.samplers.TPESampler", "optuna.pruners.SuccessiveHalvingPruner"),
        (
            ["hydra/sweeper/sampler=random", "hydra/sweeper/pruner=none"],
            "optuna.samplers.RandomSampler",
            "none",
        ),
    ],
)
def test_the_default_space_takes_any_sampler_and_pruner_from_the_command_line(tmp_path, choice, sampler, pruner):
    """The default space's TPE settings and rungs are options of the sampler and pruner groups (tpe_grouped,
    calibrated), so a command-line choice replaces them whole (it used to fail: 'Key n_startup_trials not in
    RandomSamplerConf')."""
    _, parent, _ = queued_sweep(tmp_path, *choice)
    assert (parent.data.params["sampler"], parent.data.params["pruner"]) == (sampler, pruner)


def test_the_fashion_search_is_the_default_space_on_clothes_with_their_augmentations(tmp_path):
    _, parent, _ = queued_sweep(tmp_path, "+hparams_search=fashion_mnist")
    params = parent.data.params
    assert params["fixed.hparams_search"] == "fashion_mnist"
    assert params["custom_search_space"] == "mnist_sweep.search_space.focused_space"
    study = optuna.load_study(study_name=STUDY, storage=open_storage(str(tmp_path / "optuna_journal.log")))
    # Both seeds are under 20,000 parameters and 4M MACs: queued grown into them (gap8k's last convs from 16 to 24,
    # pool7k's 16 to 24, README "Warm start"), with their rotation (one of the choices).
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.WAITING] * 2
    queued = [t.system_attrs["fixed_params"] for t in study.trials]
    assert [q["s2.w4"] if "s2.w4" in q else q["s3.w1"] for q in queued] == [24, 24]
    assert {q["augmentation"] for q in queued} == {"rotate"}
    cfg = compose_config("hydra/sweeper=optuna", "+hparams_search=fashion_mnist", with_hydra=True)
    assert cfg.hydra.sweeper.params.augmentation == "choice(none, rotate, flip, flip_crop)"
    assert (cfg.dataset.name, cfg.budget.max_params, cfg.budget.max_macs) == ("fashion_mnist", 20000, 4000000)
    # every evaluation mirrored (clothes are left-right symmetric); the finalists train 40 epochs, the rest of
    # stage 2's overrides and settings as mnist_family's
    assert cfg.hydra.sweeper.params["trainer.tta_flip"] is True
    finalists = cfg.hydra.sweeper.finalists
    assert list(finalists.overrides) == [
        "trainer.epoch_fraction=1.0",
        "trainer.evaluate_test=true",
        "tracking.log_model=true",
        "trainer.epochs=40",
    ]
    assert (finalists.top_k, list(finalists.seeds), finalists.warm_start) == (2, [2, 3, 4], 1)


def test_the_fashion_architecture_search_fixes_the_hand_nets_recipe_and_queues_no_mnist_seed(tmp_path):
    _, parent, _ = queued_sweep(tmp_path, "+hparams_search=fashion_architecture")
    params = parent.data.params
    assert params["fixed.hparams_search"] == "fashion_architecture"
    # experiment=fashion18k's recipe, fixed for every trial; only the architecture is searched
    fixed = ("optimizer.lr", "optimizer.weight_decay", "trainer.batch_size", "trainer.label_smoothing", "augmentation")
    assert [params[f"fixed.{key}"] for key in fixed] == ["0.1", "0.0005", "128", "0.0", "flip"]
    assert not {f"space.{key}" for key in fixed} & set(params)
    assert params["custom_search_space"] == "mnist_sweep.search_space.focused_space"
    assert params["finalists"] == "top 2, seeds [2, 3, 4]"
    study = optuna.load_study(study_name=STUDY, storage=open_storage(str(tmp_path / "optuna_journal.log")))
    assert study.trials == []  # no MNIST seed queued
    cfg = compose_config("hydra/sweeper=optuna", "+hparams_search=fashion_architecture", with_hydra=True)
    assert (cfg.dataset.name, cfg.budget.max_params, cfg.budget.max_macs) == ("fashion_mnist", 20000, 4000000)
    assert cfg.hydra.sweeper.params["trainer.tta_flip"] is True  # fashion_mnist's mirror and 40-epoch finalists
    assert "trainer.epochs=40" in cfg.hydra.sweeper.finalists.overrides


def test_the_long_stage_one_fashion_search_trains_stage_one_25_epochs_judged_at_3_and_9():
    """hparams_search/fashion_long_stage1: fashion_architecture (recipe, space, mirror, 40-epoch finalists) with
    stage 1 on 25 epochs and its rungs at 3 and 9 (successive halving: min_resource 3, reduction factor 3; 27 is past
    the last epoch, which is never a rung)."""
    cfg = compose_config("hydra/sweeper=optuna", "+hparams_search=fashion_long_stage1", with_hydra=True)
    base = compose_config("hydra/sweeper=optuna", "+hparams_search=fashion_architecture", with_hydra=True)
    assert (cfg.trainer.epochs, base.trainer.epochs) == (25, 15)
    pruner = cfg.hydra.sweeper.pruner
    assert (pruner.min_resource, pruner.reduction_factor, pruner.min_early_stopping_rate) == (3, 3, 0)
    assert cfg.hydra.sweeper.params == base.hydra.sweeper.params
    assert cfg.hydra.sweeper.finalists == base.hydra.sweeper.finalists  # 40 epochs, over seeds 2, 3, 4
    assert "trainer.epochs=40" in cfg.hydra.sweeper.finalists.overrides
    assert (cfg.dataset.name, cfg.budget.max_params, cfg.budget.max_macs) == ("fashion_mnist", 20000, 4000000)


def test_the_views_search_is_the_default_search_with_its_finalists_evaluated_on_nine_views():
    """hparams_search/mnist_views: mnist_architecture's space, recipe and stage 1 unchanged; its finalists add the
    rotations and shifts to mnist_family's finalist overrides, which it restates (a list override replaces)."""
    cfg = compose_config("hydra/sweeper=optuna", "+hparams_search=mnist_views", with_hydra=True)
    base = compose_config("hydra/sweeper=optuna", "+hparams_search=mnist_architecture", with_hydra=True)
    assert cfg.hydra.sweeper.params == base.hydra.sweeper.params
    assert cfg.hydra.sweeper.warm_start == base.hydra.sweeper.warm_start
    views = ["trainer.tta_rotations=[-7,-3.5,3.5,7]", "trainer.tta_shift=1"]
    assert list(cfg.hydra.sweeper.finalists.overrides) == [*base.hydra.sweeper.finalists.overrides, *views]
    finalists = {k: v for k, v in cfg.hydra.sweeper.finalists.items() if k != "overrides"}
    assert finalists == {k: v for k, v in base.hydra.sweeper.finalists.items() if k != "overrides"}
    trainer = compose_config(*views).trainer  # each parses as the trainer setting it names
    assert (list(trainer.tta_rotations), trainer.tta_shift) == ([-7, -3.5, 3.5, 7], 1)


@pytest.mark.slow
def test_a_lightning_style_sweep_config_runs_unchanged_with_its_params_alone(tmp_path, mnist_root):
    conf = tmp_path / "user_conf" / "hparams_search"
    conf.mkdir(parents=True)
    (conf / "my_search.yaml").write_text(textwrap.dedent(LIGHTNING_STYLE))
    result = run_cli(
        f"hydra.searchpath=[file://{conf.parent}]",
        "+hparams_search=my_search",
        "hydra.sweeper.n_trials=1",
        "trainer.epochs=1",
        "dataset.train_limit=1000",
        f"dataset.root={mnist_root}",
        "tracking.log_model=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    # Keys that work differently here say so, one line each.
    assert "hydra.sweeper.storage=null: the study is kept in optuna_journal.log" in result.stdout + result.stderr
    assert "hydra.sweeper.n_jobs=1: this process hands 1 trial(s) at a time" in result.stdout + result.stderr
    assert not list(tmp_path.glob("multirun/*/*/worker-*.log"))  # n_jobs: 1 means one process, as there
    _, parent, children = sweep_run(tmp_path)
    assert {k for k in parent.data.params if k.startswith("space.")} == {
        "space.optimizer.lr",
        "space.trainer.batch_size",
    }
    assert parent.data.params["fixed.hparams_search"] == "my_search"
    study = optuna.load_study(study_name=STUDY, storage=open_storage(str(tmp_path / "optuna_journal.log")))
    assert [set(t.params) for t in study.trials] == [{"optimizer.lr", "trainer.batch_size"}]
    # Stage 2 is on by default: the one trial, retrained with seeds 1, 2 and 3.
    finals = [r for r in children if r.data.tags.get("optuna_role") == "finalist"]
    assert len(children) == 4 and sorted(r.data.tags["optuna_seed"] for r in finals) == ["1", "2", "3"]
    assert all(r.info.status == "FINISHED" for r in children)
    assert (
        "Stage 2: the top 2 of stage 1" in result.stdout
        and "Winner (best mean stage-2 val_acc): trial 0" in result.stdout
    )


def test_a_sweep_against_an_absent_tracking_server_stops_at_once_and_records_nothing(tmp_path):
    result = run_cli("-m", "hydra/sweeper=optuna", "tracking.tracking_uri=http://127.0.0.1:9", cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "tracking server at http://127.0.0.1:9 does not answer" in result.stderr
    assert not (tmp_path / "optuna_journal.log").exists()

"""One real two-stage sweep on MNIST: 3 trained trials of 1 epoch on 8,000 images by two worker processes, then
the best trial retrained with seeds 1 and 2, MLflow in a temp dir. Checks the MLflow layout (one parent run for
the sweep, a nested child per trial and per finalist run whichever process ran it), that stage 1 never looks at
the test split while each finalist run does once, that nothing is written into the package, and that the exported
recipe reproduces the finalist's figure with `python -m mnist_sweep experiment=found/<study>`."""

from __future__ import annotations

import subprocess

import mlflow
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from optuna_sweeper.finalists import choose
from optuna_sweeper.outcomes import Outcome, outcome_of
from optuna_sweeper.storage import open_storage

from .helpers import REPO, compose_config, run_cli

pytestmark = pytest.mark.slow  # every test here starts a subprocess that trains or sweeps

STUDY = "mnist_sweep-max_val_acc"
# Where a run logs, its name and the sweep's budget (a constraint the finalist met, not part of its recipe).
PLUMBING = ("tracking.", "budget.", "optuna.", "trainer.progress", "model.name", "model.source", "model_name")


def package_tree_changes() -> str:
    """Untracked or modified files under conf/ and mnist_sweep/ (what a sweep must never write)."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "conf", "mnist_sweep"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout


def test_real_two_stage_sweep_nests_its_runs_tests_finalists_once_and_exports_a_recipe_that_reproduces(
    tmp_path, mnist_root, monkeypatch
):
    monkeypatch.setenv("MNIST_SWEEP_DATA", mnist_root)
    before = package_tree_changes()
    result = run_cli(
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_workers=2",
        "hydra.sweeper.finalists.top_k=1",
        "hydra.sweeper.finalists.seeds=[1,2]",
        "trainer.epochs=1",
        "dataset.train_limit=8000",
        cwd=tmp_path,
    )
    print(result.stdout[-4000:], result.stderr[-4000:])
    assert result.returncode == 0
    assert package_tree_changes() == before, "a sweep wrote into the package tree"

    study = optuna.load_study(study_name=STUDY, storage=open_storage(str(tmp_path / "optuna_journal.log")))
    trained = [t for t in study.trials if t.state.is_finished() and outcome_of(t) != Outcome.REJECTED]
    assert len(trained) == 3  # exactly: a worker that asks for a trial past n_trials gives it up (SURPLUS)
    assert next(tmp_path.glob("multirun/*/*/worker-1.log")).exists()

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist_sweep")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("optuna_role") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # one for the sweep, its worker included
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    stage_one = [r for r in children if r.data.tags.get("optuna_study") == STUDY]
    finals = [r for r in children if r.data.tags.get("optuna_role") == "finalist"]
    # Stage 2: the top trial, and the best fitted seed beside it when it is not that one (finalists.warm_start=1).
    retrained = {t.number for t in choose(study, 1, warm_start=1)}
    assert {int(r.data.tags["optuna_finalist_of"]) for r in finals} == retrained
    assert len(stage_one) == len(study.trials) and len(finals) == 2 * len(retrained)  # trained, pruned, rejected
    for run in stage_one:
        trial = study.trials[int(run.data.tags["optuna_trial"])]
        assert run.data.tags["optuna_state"] == outcome_of(trial).value and run.info.status == "FINISHED"
        assert "test_acc" not in run.data.metrics  # stage 1 ranks on validation only
    assert all(r.info.status == "FINISHED" and "test_acc" in r.data.metrics for r in finals)
    # Stage 1 trains each epoch on the space's share of the data; the finalists on all of it.
    space = compose_config("hydra/sweeper=optuna", "+hparams_search=default", with_hydra=True).hydra.sweeper.params
    trained_runs = [r for r in stage_one if r.data.tags["optuna_state"] != Outcome.REJECTED.value]
    assert {r.data.params["trainer.epoch_fraction"] for r in trained_runs} == {str(space["trainer.epoch_fraction"])}
    assert {r.data.params["trainer.epoch_fraction"] for r in finals} == {"1.0"}
    assert (
        "Stage 2: the top 1 (+ the best warm-start trial if not among them) of stage 1" in result.stdout
        and "Winner (best mean stage-2 val_acc)" in result.stdout
    )

    found = tmp_path / "found_configs" / "experiment" / "found" / f"{STUDY}.yaml"
    assert found.exists() and f"experiment=found/{STUDY} seed=1,2" in found.read_text()
    mlflow.set_tracking_uri("")  # leave no global state behind for other tests
    retrain = run_cli(f"experiment=found/{STUDY}", "seed=1", "tracking.log_model=false", cwd=tmp_path)
    print(retrain.stdout[-2000:], retrain.stderr[-2000:])
    assert retrain.returncode == 0
    winner = yaml.safe_load(found.read_text())["model"]["source"].rpartition("trial ")[2]
    (seed_one,) = [
        r for r in finals if r.data.tags["optuna_seed"] == "1" and r.data.tags["optuna_finalist_of"] == winner
    ]
    (again,) = [
        r for r in client.search_runs([experiment.experiment_id]) if r.info.run_id not in {x.info.run_id for x in runs}
    ]
    # The exact check: the retrain ran the finalist's whole resolved config, but for where it logs and its name.
    differs = {
        k: (v, again.data.params.get(k))
        for k, v in seed_one.data.params.items()
        if again.data.params.get(k) != v and not k.startswith(PLUMBING)
    }
    assert not differs, f"the exported recipe changed these settings: {differs}"
    # And the same figure, exactly: the trial measured its MACs (budget.max_macs) and the retrain did not, which is
    # harmless only because measuring draws nothing from the run's random stream (mnist_sweep.train.measure).
    assert again.data.metrics["test_acc"] == seed_one.data.metrics["test_acc"]
    assert again.data.metrics["val_acc"] == seed_one.data.metrics["val_acc"]

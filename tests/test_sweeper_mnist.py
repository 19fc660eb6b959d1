"""One real sweep on MNIST: 3 trained trials of 1 epoch on 2,000 images by two worker processes, MLflow in a temp
dir. Checks the MLflow layout (one parent run for the sweep, a nested child per trial whichever process ran it,
tagged with its Optuna state) and that the exported best model config retrains with
`python -m mnist_sweep model=found/<study>`."""

from __future__ import annotations

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient

from optuna_sweeper.outcomes import Outcome, outcome_of
from optuna_sweeper.storage import open_storage

from .helpers import run_cli

pytestmark = pytest.mark.slow  # every test here starts a subprocess that trains or sweeps

STUDY = "mnist_sweep-max_val_acc"


def test_real_sweep_nests_trial_runs_under_the_sweep_run_and_exports_the_best(tmp_path, mnist_root, monkeypatch):
    monkeypatch.setenv("MNIST_SWEEP_DATA", mnist_root)
    conf = tmp_path / "extra_conf"
    result = run_cli(
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_workers=2",
        "trainer.epochs=1",
        "dataset.train_limit=2000",
        f"hydra.sweeper.export_dir={conf / 'model' / 'found'}",
        cwd=tmp_path,
    )
    print(result.stdout[-4000:], result.stderr[-4000:])
    assert result.returncode == 0

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
    assert len(children) == len(study.trials)  # trained, pruned and rejected trials alike
    for run in children:
        trial = study.trials[int(run.data.tags["optuna_trial"])]
        expected = outcome_of(trial).value
        assert run.data.tags["optuna_state"] == expected and run.data.tags["optuna_study"] == STUDY
        assert run.info.status == "FINISHED"

    mlflow.set_tracking_uri("")  # leave no global state behind for other tests
    retrain = run_cli(
        f"hydra.searchpath=[file://{conf}]",
        f"model=found/{STUDY}",
        "trainer.epochs=1",
        "dataset.train_limit=2000",
        "tracking.log_model=false",
        cwd=tmp_path,
    )
    print(retrain.stdout[-2000:], retrain.stderr[-2000:])
    assert retrain.returncode == 0 and "test accuracy" in retrain.stdout

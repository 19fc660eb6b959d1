"""Load: 8 worker processes share one study of toy trials (no training, MLflow on), on the journal file with
MLflow in SQLite, and on a real PostgreSQL server holding both the study and the MLflow store. No trial lost, none
run twice, every trial with exactly one MLflow child run; the trials/second each storage sustained is printed.

CI runs 64 trials (8 per worker: every worker takes part, and the race for the last trials happens at any size);
the README's Reliability figures are the 400-trial run, `MNIST_SWEEP_LOAD_TRIALS=400 pytest -s tests/test_load.py`."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from mlflow.tracking import MlflowClient

from optuna_sweeper.outcomes import Outcome, count, outcome_of

from .helpers import launched, load, run_toy
from .servers import create_database

pytestmark = pytest.mark.slow

N_WORKERS = 8


def n_trials() -> int:
    text = os.environ.get("MNIST_SWEEP_LOAD_TRIALS", "64")
    if not text.isdigit() or int(text) < N_WORKERS:
        pytest.fail(f"MNIST_SWEEP_LOAD_TRIALS={text!r}: give a whole number of trials, at least {N_WORKERS}.")
    return int(text)


@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_eight_workers_share_a_study_without_losing_or_repeating_a_trial(storage, tmp_path, request):
    if storage == "postgresql":
        study_url = request.getfixturevalue("postgres_url")
        tracking_uri, extra = create_database(study_url, "mlflow"), [f"hydra.sweeper.storage={study_url}"]
    else:
        study_url, tracking_uri, extra = None, f"sqlite:///{tmp_path / 'mlflow.db'}", []
    node = f"experiment: load, tracking_uri: '{tracking_uri}', run_name: null, parent_run_id: null, tags: {{}}"
    tracking = f"tracking={{{node}}}"
    wanted = n_trials()
    result = run_toy(
        f"hydra.sweeper.n_trials={wanted}",
        f"hydra.sweeper.n_workers={N_WORKERS}",
        "epochs=1",
        "epoch_seconds=0",
        "width=choice(4, 8)",
        "hydra/sweeper/pruner=none",
        "hydra/sweeper/sampler=random",
        tracking,
        *extra,
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0

    study = load(tmp_path) if study_url is None else load_postgres(study_url)
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(len(trials)))
    assert count(trials).counted == wanted and count(trials).complete == wanted  # none lost
    assert sorted(launched(tmp_path)) == [t.number for t in trials if outcome_of(t) == Outcome.COMPLETE]  # once each
    assert len({t.user_attrs["worker"] for t in trials}) == N_WORKERS  # all eight took part

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("load").experiment_id], max_results=5000)
    per_trial = Counter(r.data.tags.get("optuna_trial") for r in runs if "optuna_trial" in r.data.tags)
    assert per_trial == Counter({str(t.number): 1 for t in trials})
    assert all(r.info.status == "FINISHED" for r in runs)

    seconds = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    rate = len(trials) / seconds
    print(f"{storage}: {len(trials)} trials by {N_WORKERS} workers in {seconds:.1f} s = {rate:.2f} trials/s")


def load_postgres(url: str):
    import optuna

    return optuna.load_study(study_name="app-max_val_acc", storage=url.replace("://", "+psycopg://", 1))

"""Hosts that share nothing but two URLs: a PostgreSQL server holding the study, and an MLflow tracking server
(PostgreSQL backend store, basic auth, artifacts proxied by the server so workers upload over HTTP). Two sweep
commands, each in a working directory of its own as two hosts would run them, work on one study; every run and
artifact ends up on the server, each command writes its own leaderboard and found config where it runs, no command
writes an MLflow store of its own, and no password is written anywhere."""

from __future__ import annotations

import os
import subprocess

import optuna
import pytest
from mlflow.tracking import MlflowClient

from optuna_sweeper.outcomes import Outcome, count, outcome_of

from . import servers
from .helpers import STUDY, start_toy
from .servers import MLFLOW_PASSWORD, MLFLOW_USER, POSTGRES_PASSWORD, create_database

pytestmark = pytest.mark.slow

SECRETS = (POSTGRES_PASSWORD.encode(), MLFLOW_PASSWORD.encode())


@pytest.fixture
def mlflow_server(postgres_with_password, tmp_path):
    server_dir = tmp_path / "server"
    with servers.mlflow_server(postgres_with_password, server_dir, POSTGRES_PASSWORD) as uri:
        yield uri, server_dir


def test_two_hosts_share_a_study_and_a_tracking_server_and_write_no_password(
    postgres_with_password, mlflow_server, tmp_path, monkeypatch
):
    uri, server_dir = mlflow_server
    study_url = create_database(postgres_with_password, "study", POSTGRES_PASSWORD)
    for key in (
        "PGPASSWORD",
        "PGPASSFILE",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ):
        monkeypatch.delenv(key, raising=False)
    tracking = "tracking={experiment: scale, tracking_uri: '%s', run_name: null, parent_run_id: null, tags: {}}"
    sweep = ["hydra.sweeper.n_trials=6", "hydra.sweeper.n_workers=1", "epoch_seconds=0.3"]
    sweep += ["hydra.sweeper.finalists.top_k=1", "hydra.sweeper.finalists.seeds=[1,2]"]  # stage 2 across hosts too

    # Host A types its passwords into the URLs; host B keeps them where the clients look for them.
    host_a, host_b = tmp_path / "host_a", tmp_path / "host_b"
    for host in (host_a, host_b):
        host.mkdir()
    secret_study = study_url.replace("postgres@", f"postgres:{POSTGRES_PASSWORD}@")
    secret_uri = uri.replace("http://", f"http://{MLFLOW_USER}:{MLFLOW_PASSWORD}@")
    pgpass = host_b / "pgpass"
    pgpass.write_text(f"127.0.0.1:*:*:postgres:{POSTGRES_PASSWORD}\n")
    pgpass.chmod(0o600)
    env_b = {
        **os.environ,
        "PGPASSFILE": str(pgpass),
        "MLFLOW_TRACKING_USERNAME": MLFLOW_USER,
        "MLFLOW_TRACKING_PASSWORD": MLFLOW_PASSWORD,
    }
    out = {host: (host / "console.txt").open("w") for host in (host_a, host_b)}
    a = start_toy(
        f"hydra.sweeper.storage={secret_study}", tracking % secret_uri, *sweep,
        cwd=host_a, stdout=out[host_a], stderr=subprocess.STDOUT,
    )  # fmt: skip
    b = start_toy(
        f"hydra.sweeper.storage={study_url}", tracking % uri, *sweep,
        cwd=host_b, stdout=out[host_b], stderr=subprocess.STDOUT, env=env_b,
    )  # fmt: skip
    assert a.wait(timeout=300) == 0 and b.wait(timeout=300) == 0, [
        (h / "console.txt").read_text()[-3000:] for h in (host_a, host_b)
    ]
    pgpass.unlink()  # the password file is the user's, not something the sweep wrote

    # One study, both hosts' workers in it.
    study = optuna.load_study(study_name=STUDY, storage=secret_study)
    trials = study.get_trials(deepcopy=False)
    assert count(trials).counted == 6 and len({t.user_attrs["worker"] for t in trials}) == 2

    # Every run on the server, artifacts uploaded to it through HTTP, nothing tracked locally.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", MLFLOW_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", MLFLOW_PASSWORD)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("scale").experiment_id], max_results=100)
    sweeps = [r for r in runs if r.data.tags.get("optuna_role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("optuna_study") == STUDY and "optuna_trial" in r.data.tags]
    assert len(sweeps) == 2 and {r.data.tags["optuna_trial"] for r in children} == {str(t.number) for t in trials}
    finalist_runs = [r for r in runs if r.data.tags.get("optuna_role") == "finalist"]
    assert sorted(r.data.tags["optuna_seed"] for r in finalist_runs if r.info.status == "FINISHED") == ["1", "2"]
    assert {r.data.tags["optuna_trial"]: r.data.tags["optuna_state"] for r in children} == {
        str(t.number): outcome_of(t).value for t in trials
    }
    # The runs of trials whose job ran. Not a surplus trial's: two hosts may ask for the last trial at once, and the
    # later one is given back unrun with a run of its own (tagged SURPLUS) that holds no artifact.
    ran = {str(t.number) for t in trials if outcome_of(t) in (Outcome.COMPLETE, Outcome.PRUNED)}
    trained = [r for r in children if r.data.tags["optuna_trial"] in ran]
    assert trained and all(r.info.artifact_uri.startswith("mlflow-artifacts:") for r in trained)
    assert all("config.yaml" in [f.path for f in client.list_artifacts(r.info.run_id)] for r in trained)
    assert list((server_dir / "artifacts").rglob("config.yaml"))
    for host in (host_a, host_b):
        assert not list(host.rglob("mlflow.db")) and not list(host.rglob("mlruns"))
        assert (
            list(host.rglob("leaderboard.csv")) and (host / "found" / "experiment" / "found" / f"{STUDY}.yaml").exists()
        )

    # No password in anything either host or the server's artifact store holds (the consoles included), nor in
    # MLflow's params and tags or the study's records.
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name != "server"]
    assert not [p for p in written if any(secret in p.read_bytes() for secret in SECRETS)]
    recorded = str([(r.data.params, r.data.tags) for r in runs])
    recorded += str([(t.params, t.user_attrs, t.system_attrs) for t in trials])  # the study's own records
    assert POSTGRES_PASSWORD not in recorded and MLFLOW_PASSWORD not in recorded

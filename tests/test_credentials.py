"""Passwords never reach what a sweep writes (optuna_sweeper/credentials.py): the URL rewriting on its own, then
toy sweeps against a real PostgreSQL server that asks for a password, given in the URL, in ~/.pgpass, or not at
all."""

from __future__ import annotations

import os

import optuna
import pytest
from omegaconf import OmegaConf

from optuna_sweeper.credentials import export, keep_passwords_out, take_passwords
from optuna_sweeper.errors import SweepError

from .helpers import STUDY, run_toy
from .servers import POSTGRES_PASSWORD

SECRET = "pa%3As5-w0rd"  # percent-encoded ':' as a URL must write it


@pytest.mark.parametrize(
    "text,clean,env",
    [
        (
            f"hydra.sweeper.storage=postgresql://sweeper:{SECRET}@db:5432/study",
            "hydra.sweeper.storage=postgresql://sweeper@db:5432/study",
            {"PGPASSWORD": "pa:s5-w0rd"},
        ),
        (
            f"postgresql+psycopg://u:{SECRET}@127.0.0.1/x",
            "postgresql+psycopg://u@127.0.0.1/x",
            {"PGPASSWORD": "pa:s5-w0rd"},
        ),
        (
            f"tracking.tracking_uri='http://alice:{SECRET}@mlflow:5000'",
            "tracking.tracking_uri='http://mlflow:5000'",
            {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "pa:s5-w0rd"},
        ),
        ("postgresql://sweeper@db/study", "postgresql://sweeper@db/study", {}),  # ~/.pgpass or PGPASSWORD
        ("http://mlflow:5000/api@v2", "http://mlflow:5000/api@v2", {}),  # an '@' in a path is not a password
        ("optuna_journal.log", "optuna_journal.log", {}),
    ],
)
def test_a_url_password_moves_to_the_variable_its_client_reads(text, clean, env):
    found: dict[str, str] = {}
    assert take_passwords([text], found) == [clean]
    assert found == env


def test_passwords_that_the_environment_cannot_carry_are_refused():
    with pytest.raises(SweepError, match="mysql:// URL .* holds a password"):
        take_passwords(["mysql://u:pw@db/x"], {})
    with pytest.raises(SweepError, match="Two different passwords would both need PGPASSWORD.*pgpass"):
        take_passwords(["postgresql://a:one@h1/x", "postgresql://b:two@h2/y"], {})


def test_a_password_in_the_url_and_another_in_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "other")
    with pytest.raises(SweepError, match="PGPASSWORD in the environment holds another one"):
        export({"PGPASSWORD": "mine"})
    export({"PGPASSWORD": "other"})  # the same one twice is fine


def test_the_sweep_config_keeps_no_password(monkeypatch):
    """Every place the sweeper reads or hands on: its storage, the command line's overrides (jobs are composed from
    them again), the app config's values (a URL in a config file) and the arguments; workers get the clean lines."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    storage = "postgresql://sweeper:pw1@db/study"
    config = OmegaConf.create(
        {
            "tracking": {"tracking_uri": "http://alice:pw2@mlflow:5000", "run_name": "${tracking.tracking_uri}-x"},
            "x": 1,
            "hydra": {
                "sweeper": {"storage": storage},
                "overrides": {"hydra": [f"hydra.sweeper.storage={storage}"], "task": ["x=1"]},
            },
        }
    )
    settings = OmegaConf.create({"storage": storage})
    arguments, for_workers = keep_passwords_out(settings, config, ["x=1"])
    assert "pw1" not in str(OmegaConf.to_container(config)) + str(settings) + str(arguments)
    assert "pw2" not in OmegaConf.to_yaml(config, resolve=True) + str(arguments)
    assert settings.storage == config.hydra.sweeper.storage == "postgresql://sweeper@db/study"
    assert arguments == ["x=1", "tracking.tracking_uri='http://mlflow:5000'"]  # overrides the config file's value
    assert config.tracking.run_name == "http://mlflow:5000-x"  # its interpolation now reads the clean value
    assert for_workers == ["hydra.sweeper.storage=postgresql://sweeper@db/study"]
    assert os.environ["PGPASSWORD"] == "pw1" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "pw2"


# ------------------------------------------------------------------ against a real server
TRACKING = "tracking={experiment: secrets, tracking_uri: null, run_name: null, parent_run_id: null, tags: {}}"
SWEEP = ("hydra.sweeper.n_trials=4", "hydra.sweeper.finalists.top_k=1", "hydra.sweeper.finalists.seeds=[1,2]", TRACKING)


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{POSTGRES_PASSWORD}@", 1)


@pytest.mark.slow
def test_a_password_given_in_the_storage_url_is_written_nowhere(postgres_with_password, tmp_path, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.chdir(tmp_path)
    result = run_toy(f"hydra.sweeper.storage={with_password(postgres_with_password)}", *SWEEP, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name=STUDY, storage=with_password(postgres_with_password))
    assert len([t for t in study.trials if t.state.is_finished()]) >= 4
    # Everything the sweep wrote: the trials' Hydra files and logs, the leaderboard, the found config, the MLflow
    # store (params, tags) and its artifacts (each run's config.yaml), the console, and the study's own records.
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in written) and any(p.name == "hydra.yaml" for p in written)
    assert not [p for p in written if POSTGRES_PASSWORD.encode() in p.read_bytes()]
    assert POSTGRES_PASSWORD not in result.stdout + result.stderr
    records = [(t.params, t.user_attrs, t.system_attrs) for t in study.trials]
    assert POSTGRES_PASSWORD not in str(records)
    # What the jobs were given instead: the URL without the password (PGPASSWORD carried it).
    configs = "".join(p.read_text() for p in written if p.name == "config.yaml")
    assert "postgres@127.0.0.1" in configs


@pytest.mark.slow
def test_a_password_in_pgpass_works_and_none_at_all_is_one_clear_error(postgres_with_password, tmp_path, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    url = postgres_with_password
    refused = run_toy(f"hydra.sweeper.storage={url}", *SWEEP, cwd=tmp_path)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "Cannot open the Optuna storage" in refused.stderr and "password" in refused.stderr

    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:*:*:postgres:{POSTGRES_PASSWORD}\n")
    pgpass.chmod(0o600)  # libpq ignores a password file others can read
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    launch = tmp_path / "launch"
    launch.mkdir()
    result = run_toy(f"hydra.sweeper.storage={url}", *SWEEP, cwd=launch)
    assert result.returncode == 0, result.stderr
    assert not [p for p in launch.rglob("*") if p.is_file() and POSTGRES_PASSWORD.encode() in p.read_bytes()]

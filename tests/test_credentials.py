"""Passwords never reach what a sweep writes (optuna_sweeper/credentials.py): the URL rewriting on its own, and a
real PostgreSQL server that asks for a password nobody gave."""

from __future__ import annotations

import os

import pytest
from omegaconf import OmegaConf

from optuna_sweeper.credentials import export, keep_passwords_out, take_passwords
from optuna_sweeper.errors import SweepError

from .helpers import run_toy

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
# A password in the URL and one in a password file: tests/test_scale_out.py (two hosts, every file grepped).


@pytest.mark.slow
def test_a_storage_that_asks_for_a_password_nobody_gave_is_one_clear_error(
    postgres_with_password, tmp_path, monkeypatch
):
    for key in ("PGPASSWORD", "PGPASSFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pgpass either
    refused = run_toy(f"hydra.sweeper.storage={postgres_with_password}", "hydra.sweeper.n_trials=2", cwd=tmp_path)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "Cannot open the Optuna storage" in refused.stderr and "no password supplied" in refused.stderr
    assert not list(tmp_path.rglob("trial_*")), "nothing may run"

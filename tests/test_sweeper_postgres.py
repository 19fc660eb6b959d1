"""The sweeper on a real PostgreSQL server (Debian's postgresql package), started in a temp dir by the test."""

from __future__ import annotations

import optuna
import pytest

from .helpers import run_toy

pytestmark = pytest.mark.slow  # every test here starts a subprocess that trains or sweeps


def test_sweep_on_postgresql_resumes(tmp_path, postgres_url):
    work = tmp_path / "work"
    work.mkdir()
    # One process: the exact trial numbers below leave no room for a second worker's overshoot.
    args = [f"hydra.sweeper.storage={postgres_url}", "width=4", "epochs=2", "hydra.sweeper.n_workers=1"]
    assert run_toy("hydra.sweeper.n_trials=2", *args, cwd=work).returncode == 0
    assert run_toy("hydra.sweeper.n_trials=3", *args, cwd=work).returncode == 0
    study = optuna.load_study(study_name="app-max_val_acc", storage=postgres_url.replace("://", "+psycopg://", 1))
    assert [t.number for t in study.trials] == [0, 1, 2] and all(t.state.is_finished() for t in study.trials)

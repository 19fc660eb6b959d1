"""Helpers shared by the tests: compose the app's config in-process, run the CLI or the toy sweeper app as a user
would, and read back a toy study."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mnist_sweep.config import register_configs
from optuna_sweeper.outcomes import Outcome, outcome_of
from optuna_sweeper.storage import open_storage

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
APP = Path(__file__).parent / "sweeper_app" / "app.py"
STUDY = "app-max_val_acc"  # the toy app's default study name
register_configs()


def compose_config(*overrides: str, with_hydra: bool = False) -> DictConfig:
    """with_hydra: keep the hydra node (as a sweep's composed trial config has it)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=with_hydra)


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m mnist_sweep ARGS` in cwd, as a user would type it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mnist_sweep", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def toy_command(*args: str) -> list[str]:
    return [sys.executable, str(APP), "-m", *args]


def start_toy(*args: str, cwd: Path, **popen) -> subprocess.Popen:
    """The same sweep, started in the background (to interrupt or kill it)."""
    return subprocess.Popen(toy_command(*args), cwd=cwd, **popen)


def run_toy(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """A sweep of the toy app (tests/sweeper_app): the real sweeper, no training."""
    result = subprocess.run(toy_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    print(result.stdout[-3000:], result.stderr[-3000:])
    return result


def load(cwd: Path, name: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(str(cwd / "optuna_journal.log")))


def launched(cwd: Path) -> dict[int, dict]:
    """Trial number -> what the job wrote: only trials whose job actually ran are here."""
    return {int(p.stem): json.loads(p.read_text()) for p in (cwd / "jobs").glob("*.json") if p.stem.isdigit()}


def launched_finals(cwd: Path) -> dict[int, dict]:
    """Stage-2 run number (in the finalist study) -> what its job wrote."""
    return {int(p.stem[6:]): json.loads(p.read_text()) for p in (cwd / "jobs").glob("final-*.json")}


def by_state(study: optuna.Study) -> dict[str, list[optuna.trial.FrozenTrial]]:
    states: dict[str, list] = {}
    for t in study.trials:
        states.setdefault(outcome_of(t).value, []).append(t)
    return states


def trained_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if outcome_of(t) in (Outcome.COMPLETE, Outcome.PRUNED)]

"""Shared fixtures. Real MNIST is found through MNIST_SWEEP_DATA (see README: "Data"); under CI=true a missing
dataset fails the run instead of skipping the tests that need it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mnist_sweep.config import register_configs
from mnist_sweep.data import candidate_dirs, find_files

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
register_configs()


def compose_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(autouse=True)
def no_inherited_tracking_uri():
    """mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI, which would send later subprocess runs to an
    earlier test's database; every test starts and ends without it."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session")
def mnist_root() -> str:
    root = os.environ.get("MNIST_SWEEP_DATA", str(REPO.parent / "shared" / "data"))
    if find_files("mnist", candidate_dirs("mnist", root)) is None:
        message = f"real MNIST not found under {root} (set MNIST_SWEEP_DATA to the folder holding MNIST/raw)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return root


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m mnist_sweep ARGS` in cwd, as a user would type it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mnist_sweep", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip

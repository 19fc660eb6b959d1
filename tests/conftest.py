"""Shared fixtures. Real MNIST is found through MNIST_SWEEP_DATA (see README: "Data"); under CI=true a missing
dataset fails the run instead of skipping the tests that need it."""

from __future__ import annotations

import os

import pytest

from mnist_sweep.data import candidate_dirs, find_files

from .helpers import REPO


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

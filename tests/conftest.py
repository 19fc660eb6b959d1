"""Shared fixtures. Real MNIST is found through MNIST_SWEEP_DATA (see README: "Data"); under CI=true a missing
dataset fails the run instead of skipping the tests that need it."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from mnist_sweep.data import candidate_dirs, find_files

from .helpers import REPO
from .servers import POSTGRES_PASSWORD, postgres_server

# The Ctrl-C tests send SIGINT to sweeps as a terminal does. A shell starts a background job (`pytest ... &` from a
# script) with SIGINT ignored, and a child inherits that; a Python handler here is reset to the default on exec, so
# the sweeps the tests start see SIGINT as a terminal's foreground command does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


def server_or_skip(manager):
    """A server from tests/servers.py; not installed: a skip, or a failure under CI=true."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(manager)
        except FileNotFoundError as missing:
            if os.environ.get("CI") == "true":
                pytest.fail(str(missing))
            pytest.skip(str(missing))
        yield url


@pytest.fixture
def postgres_url():
    """A PostgreSQL server of its own that trusts every connection: postgresql://postgres@127.0.0.1:<port>/postgres."""
    yield from server_or_skip(postgres_server(password=None))


@pytest.fixture
def postgres_with_password():
    """A server that asks TCP clients for POSTGRES_PASSWORD (scram-sha-256): postgresql://postgres@host:port/postgres,
    without the password, which the test gives the way it tests."""
    yield from server_or_skip(postgres_server(password=POSTGRES_PASSWORD))

"""Shared fixtures. Real MNIST is found through MNIST_SWEEP_DATA (see README: "Data"); under CI=true a missing
dataset fails the run instead of skipping the tests that need it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

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


PG_BIN = Path("/usr/lib/postgresql")


def pg_tool(name: str) -> str | None:
    found = sorted(PG_BIN.glob(f"*/bin/{name}"))
    return str(found[-1]) if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A PostgreSQL server of its own that trusts every connection: postgresql://postgres@127.0.0.1:<port>/postgres."""
    yield from postgres_server(password=None)


POSTGRES_PASSWORD = "Sw33p-s3cret-7f1c"  # the tests grep everything a sweep wrote for it


@pytest.fixture
def postgres_with_password():
    """A server that asks TCP clients for POSTGRES_PASSWORD (scram-sha-256): postgresql://postgres@host:port/postgres,
    without the password, which the test gives the way it tests."""
    yield from postgres_server(password=POSTGRES_PASSWORD)


def postgres_server(password: str | None):
    initdb, pg_ctl = pg_tool("initdb"), pg_tool("pg_ctl")
    if not (initdb and pg_ctl):
        message = "PostgreSQL server not installed (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # Not under pytest's tmp_path: that is private to root, and the server refuses to run as root, so it runs
    # as the package's postgres user then.
    data, port = Path(tempfile.mkdtemp(prefix="mnist-sweep-pg-")), free_port()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(data, "postgres")
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=60)  # noqa: E731
    if password is None:
        run(initdb, "-D", str(data / "db"), "-U", "postgres", "--auth=trust")
    else:
        pwfile = data / "pwfile"
        pwfile.write_text(password + "\n")
        if as_user:
            shutil.chown(pwfile, "postgres")
        auth = ["--auth-host=scram-sha-256", "--auth-local=trust", f"--pwfile={pwfile}"]
        run(initdb, "-D", str(data / "db"), "-U", "postgres", *auth)
        pwfile.unlink()
    # -l: the server must not hold our output pipes open, or waiting for pg_ctl never ends.
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    try:
        run(pg_ctl, "-D", str(data / "db"), "-o", options, "-l", str(data / "server.log"), "-w", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data / "db"), "-m", "immediate", "stop"], capture_output=True, timeout=60
        )
        shutil.rmtree(data, ignore_errors=True)

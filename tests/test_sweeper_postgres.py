"""The sweeper on a real PostgreSQL server (Debian's postgresql package), started in a temp dir by the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest

from .helpers import run_toy

pytestmark = pytest.mark.slow  # every test here starts a subprocess that trains or sweeps

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
    run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust")
    # -l: the server must not hold our output pipes open, or waiting for pg_ctl never ends.
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    try:
        run(pg_ctl, "-D", str(data), "-o", options, "-l", str(data / "server.log"), "-w", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def test_sweep_on_postgresql_resumes(tmp_path, postgres_url):
    work = tmp_path / "work"
    work.mkdir()
    # One process: the exact trial numbers below leave no room for a second worker's overshoot.
    args = [f"hydra.sweeper.storage={postgres_url}", "width=4", "epochs=2", "hydra.sweeper.n_workers=1"]
    assert run_toy("hydra.sweeper.n_trials=2", *args, cwd=work).returncode == 0
    assert run_toy("hydra.sweeper.n_trials=3", *args, cwd=work).returncode == 0
    study = optuna.load_study(study_name="app-max_val_acc", storage=postgres_url.replace("://", "+psycopg://", 1))
    assert [t.number for t in study.trials] == [0, 1, 2] and all(t.state.is_finished() for t in study.trials)

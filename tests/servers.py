"""Throw-away servers for the tests and benchmarks: a PostgreSQL server from Debian's `postgresql` package and an
`mlflow server` (PostgreSQL backend store, basic auth, artifacts proxied). Plain context managers; the pytest
fixtures in conftest.py wrap them."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

PG_BIN = Path("/usr/lib/postgresql")
POSTGRES_PASSWORD = "Sw33p-s3cret-7f1c"  # the tests grep everything a sweep wrote for it
MLFLOW_USER, MLFLOW_PASSWORD = "sweeper", "Mlfl0w-s3cret-91ab"


def pg_tool(name: str) -> str | None:
    found = sorted(PG_BIN.glob(f"*/bin/{name}"))
    return str(found[-1]) if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server(password: str | None) -> Iterator[str]:
    """postgresql://postgres@127.0.0.1:<port>/postgres. password None: every connection is trusted; else TCP
    clients must give it (scram-sha-256). Raises FileNotFoundError when PostgreSQL is not installed."""
    initdb, pg_ctl = pg_tool("initdb"), pg_tool("pg_ctl")
    if not (initdb and pg_ctl):
        raise FileNotFoundError("PostgreSQL server not installed (apt-get install postgresql)")
    # Not under pytest's tmp_path: that is private to root, and the server refuses to run as root, so it runs
    # as the package's postgres user then.
    data, port = Path(tempfile.mkdtemp(prefix="mnist-sweep-pg-")), free_port()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(data, "postgres")
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=60)  # noqa: E731
    auth = ["--auth=trust"]
    if password is not None:
        pwfile = data / "pwfile"
        pwfile.write_text(password + "\n")
        if as_user:
            shutil.chown(pwfile, "postgres")
        auth = ["--auth-host=scram-sha-256", "--auth-local=trust", f"--pwfile={pwfile}"]
    run(initdb, "-D", str(data / "db"), "-U", "postgres", *auth)
    (data / "pwfile").unlink(missing_ok=True)
    # -l: the server must not hold our output pipes open, or waiting for pg_ctl never ends.
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    try:
        run(pg_ctl, "-D", str(data / "db"), "-o", options, "-l", str(data / "server.log"), "-w", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        stop = [*as_user, pg_ctl, "-D", str(data / "db"), "-m", "immediate", "stop"]
        subprocess.run(stop, capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def create_database(postgres_url: str, name: str, password: str | None = None) -> str:
    """A database of its own on the server (Optuna and MLflow both keep an alembic_version table)."""
    url = urlparse(postgres_url)
    env = {**os.environ, **({"PGPASSWORD": password} if password else {})}
    command = [pg_tool("createdb"), "-h", url.hostname, "-p", str(url.port), "-U", "postgres", name]
    subprocess.run(command, check=True, capture_output=True, timeout=60, env=env)
    return f"postgresql+psycopg://postgres@{url.hostname}:{url.port}/{name}"


@contextlib.contextmanager
def mlflow_server(postgres_url: str, folder: Path, password: str | None = None) -> Iterator[str]:
    """`mlflow server` as a team runs it: a PostgreSQL backend store (database `mlflow`, created here), basic auth
    (admin MLFLOW_USER / MLFLOW_PASSWORD) and --serve-artifacts (clients upload over HTTP; files land in
    folder/artifacts). Yields its http:// URI."""
    store = create_database(postgres_url, "mlflow", password)
    folder.mkdir(parents=True, exist_ok=True)
    auth = folder / "basic_auth.ini"
    auth.write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{folder / 'auth.db'}\n"
        f"admin_username = {MLFLOW_USER}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Without it every request hashes the password again (PBKDF2): seconds of server time per trial.
        "auth_cache_ttl_seconds = 60\n"
    )
    port = free_port()
    env = {
        **os.environ,
        **({"PGPASSWORD": password} if password else {}),  # the server's own credentials, in its own environment
        "MLFLOW_AUTH_CONFIG_PATH": str(auth),
        "MLFLOW_AUTH_ADMIN_PASSWORD": MLFLOW_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),  # the auth app's CSRF key
    }
    command = [
        sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--backend-store-uri", store,
        "--serve-artifacts", "--artifacts-destination", str(folder / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log_path = folder / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180  # a fresh PostgreSQL store runs all of MLflow's migrations first
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=5)
                break
            except OSError as exc:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {log_path.read_text()[-3000:]}") from exc
                time.sleep(1)
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)

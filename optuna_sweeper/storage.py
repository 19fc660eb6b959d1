"""Where a study lives: a journal file (the default; Optuna's file lock makes it safe for several processes) or a
database URL (sqlite:///..., postgresql://...). The sweeper and every trial job open it from the same string."""

from __future__ import annotations

import functools
import importlib.util
import random
import time
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from optuna_sweeper.errors import SweepError, one_line

DEFAULT_JOURNAL = "optuna_journal.log"


def resolve_storage(storage: str | None, launch_dir: str | Path) -> str:
    """A journal path relative to the launch directory becomes absolute, so jobs in other dirs find it too.
    None (hydra-optuna-sweeper's default, an in-memory study there) is the journal file here."""
    storage = storage or DEFAULT_JOURNAL
    if "://" in storage:
        return postgres_driver(storage)
    return str((Path(launch_dir) / Path(storage).expanduser()).resolve())


def postgres_driver(url: str) -> str:
    # SQLAlchemy reads postgresql:// as psycopg2; this project installs psycopg (3), so name it when psycopg2 is absent.
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None:
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


@functools.cache
def open_storage(storage: str) -> BaseStorage:
    """One storage object per URL and process: every trial job of a worker reaches its trial through it, and a new
    RDBStorage per trial would open a new connection pool each time (a PostgreSQL server soon refuses more)."""
    try:
        if "://" not in storage:
            Path(storage).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(storage))
        return database_storage(storage)
    except Exception as exc:  # SQLAlchemy, a driver or the OS: any of them means this storage can't be used
        raise SweepError(
            f"Cannot open the Optuna storage {redact(storage)!r}: {type(exc).__name__}: {one_line(exc)} Set "
            "hydra.sweeper.storage to a journal file path (default optuna_journal.log) or a database URL such as "
            "sqlite:///optuna.db or postgresql://user@host:5432/dbname (pip install psycopg[binary]; the password in "
            "~/.pgpass or PGPASSWORD)."
        ) from None


SCHEMA_RACE_ATTEMPTS = 5


def database_storage(url: str) -> RDBStorage:
    """Workers started together on an empty database (a SLURM job array) all create Optuna's tables, and all but one
    fail on a duplicate ("alembic_version already exists"); once the winner is done the schema is there, so the
    others try again."""
    for attempt in range(SCHEMA_RACE_ATTEMPTS):
        try:
            # pool_pre_ping survives a restarted database server.
            return RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except Exception as exc:
            race = "already exists" in str(exc) or type(exc).__name__ == "IntegrityError"
            if not race or attempt == SCHEMA_RACE_ATTEMPTS - 1:
                raise
            time.sleep(0.5 + random.random() * (attempt + 1))
    raise AssertionError("unreachable")


def in_memory(storage: str) -> bool:
    """An in-memory database lives in one process: extra workers could not see the study."""
    return storage.startswith("sqlite") and storage.split("://", 1)[1] in ("", "/", "/:memory:")


def redact(url: str) -> str:
    """Hide a password in a message."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
    return url


def load_study(storage: str, study_name: str, pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    # A trial job only reports and asks the pruner; the cheap random sampler keeps it from fitting a model.
    return optuna.load_study(
        study_name=study_name, storage=open_storage(storage), sampler=optuna.samplers.RandomSampler(), pruner=pruner
    )

"""A sqlite MLflow store created by one process at a time.

MLflow creates a missing sqlite database's tables (alembic migrations) without a lock of its own. Two processes
that open a fresh store at once (two runs started together in a fresh launch directory, the tasks of a SLURM job
array, a sweep command and its workers) both migrate it: the loser fails with "table experiments already exists",
or leaves alembic's "_alembic_tmp_experiments" behind, and then every later open of the store fails the same way.
An flock on the database's directory (no lock file left behind) lets one process create the tables while the others
wait. An app's runs must take the same flock (mnist_sweep.tracking.sqlite_creation_lock does: the same lines, as
a single run of the app never imports this package)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def sqlite_creation_lock(uri: str) -> Iterator[None]:
    """Held while a process opens the tracking store at uri: a server, an existing store or another scheme costs
    one flock, or nothing."""
    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    parent = Path(path).resolve().parent if path is not None and not path.startswith(":memory:") else None
    if parent is None or not parent.is_dir():  # nothing to create twice, or MLflow's own error to come
        yield
        return
    directory = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(directory, fcntl.LOCK_EX)
        yield
    finally:
        os.close(directory)  # releases the lock

"""What a sweep costs per trial besides training: the storage's and MLflow's bookkeeping, measured with the toy app
(tests/sweeper_app: the real sweeper, Hydra launches and MLflow runs, no training; each trial one epoch of
arithmetic). For each storage and tracking store: milliseconds per trial, from the first trial's start to the last
one's end in the study (process start-up excluded), with one worker; then trials/hour with 1, 2 and 4 workers on
PostgreSQL and an MLflow server. Starts its own PostgreSQL and `mlflow server` (tests/servers.py).

    python -m tests.bench_sweep_overhead [--trials 60]

A benchmark, not a test: figures vary from machine to machine (README, "Scaling out", says where they came from).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import optuna

from optuna_sweeper.storage import open_storage

from . import servers
from .helpers import STUDY, toy_command

TRACKING = "tracking={experiment: overhead, tracking_uri: '%s', run_name: null, parent_run_id: null, tags: {}}"


def sweep(cwd: Path, trials: int, workers: int, storage: str | None, tracking_uri: str | None) -> float:
    """Seconds per trial of one toy sweep, from the study's timestamps."""
    cwd.mkdir(parents=True)
    args = [
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.n_workers={workers}",
        "hydra/sweeper/sampler=random",
        "hydra/sweeper/pruner=none",
        "epochs=1",
        "width=choice(4, 8)",
    ]
    args += [f"hydra.sweeper.storage='{storage}'"] if storage else []
    args += [TRACKING % tracking_uri] if tracking_uri else []
    done = subprocess.run(toy_command(*args), cwd=cwd, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    study = optuna.load_study(study_name=STUDY, storage=open_storage(storage or str(cwd / "optuna_journal.log")))
    finished = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete]
    span = max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)
    return span.total_seconds() / len(finished)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=60)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ["MLFLOW_TRACKING_USERNAME"] = servers.MLFLOW_USER  # the server's basic auth
    os.environ["MLFLOW_TRACKING_PASSWORD"] = servers.MLFLOW_PASSWORD
    with tempfile.TemporaryDirectory() as tmp, servers.postgres_server(password=None) as postgres:
        root = Path(tmp)
        with servers.mlflow_server(postgres, root / "server") as server:
            databases = iter(range(100))

            def study_db() -> str:  # a fresh database per sweep, so each study starts empty
                return servers.create_database(postgres, f"study{next(databases)}")

            def sqlite(name: str) -> str:
                return f"sqlite:///{root / name}"

            configs = {  # name -> (storage, tracking URI); None: the journal file / no MLflow
                "journal file, no MLflow": lambda: (None, None),
                "journal file + MLflow SQLite": lambda: (None, sqlite("mlflow1.db")),
                "SQLite + MLflow SQLite": lambda: (sqlite("optuna.db"), sqlite("mlflow2.db")),
                "PostgreSQL, no MLflow": lambda: (study_db(), None),
                "PostgreSQL + MLflow server": lambda: (study_db(), server),
            }
            print(
                f"{'storage + tracking':30} {'ms/trial':>9} {'over the first':>15}   (1 worker, {args.trials} trials)"
            )
            floor = None
            for number, (name, make) in enumerate(configs.items()):
                seconds = sweep(root / f"run{number}", args.trials, 1, *make())
                floor = seconds if floor is None else floor
                print(f"{name:30} {seconds * 1000:9.0f} {(seconds - floor) * 1000:+15.0f}")
            print(f"\n{'workers':>7} {'trials/hour':>12}   (PostgreSQL + MLflow server, {args.trials} trials)")
            for workers in (1, 2, 4):
                seconds = sweep(root / f"workers{workers}", args.trials, workers, study_db(), server)
                print(f"{workers:>7} {3600 / seconds:12.0f}")


if __name__ == "__main__":
    main()

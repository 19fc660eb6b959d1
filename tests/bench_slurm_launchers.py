"""Which way to run a sweep on SLURM: workers as a job array (slurm/sweep_workers.sbatch) or Hydra's submitit
launcher handing trials to SLURM as jobs. Both on the one-node cluster of slurm/one_node_cluster.sh with 2 CPUs,
the toy app (tests/sweeper_app) whose trials do no arithmetic worth timing but take a drawn time (4 epochs of
`epoch_seconds` in 0.25-2 s: real trials differ in length too), no pruning, the same number of trials.

    python -m tests.bench_slurm_launchers [--trials 16]

Prints trials/hour and the share of the 2 CPUs' time not spent inside a trial's epochs ("idle": process start-up,
scheduling, bookkeeping, and waiting for the slowest job of a launcher batch). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna

from optuna_sweeper.outcomes import Outcome, outcome_of
from optuna_sweeper.storage import open_storage

from . import servers
from .helpers import APP, REPO, STUDY, toy_command

CPUS = 2
SPACE = ["epochs=4", "epoch_seconds=interval(0.25, 2.0)", "hydra/sweeper/pruner=none", "hydra/sweeper/sampler=random"]


def figures(study: optuna.Study) -> tuple[float, float]:
    """(trials/hour, idle share of the CPUs) from the study: the span from the first trial's start to the last
    one's end, and the epochs' seconds each trial slept through."""
    done = [t for t in study.get_trials(deepcopy=False) if outcome_of(t) == Outcome.COMPLETE]  # not the rejected
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    work = sum(4 * t.params["epoch_seconds"] for t in done)
    return len(done) / span * 3600, 1 - work / (CPUS * span)


def job_array(root: Path, postgres: str, trials: int) -> optuna.Study:
    storage = servers.create_database(postgres, "array").replace("postgresql+psycopg", "postgresql")
    env = {**os.environ, "OPTUNA_STORAGE": storage, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    env.update(PYTHON=sys.executable, SWEEP_APP=str(APP))
    command = ["sbatch", "--wait", f"--array=0-{CPUS - 1}", f"--output={root}/slurm-%A_%a.out"]
    command += [str(REPO / "slurm" / "sweep_workers.sbatch"), f"hydra.sweeper.n_trials={trials}", *SPACE]
    subprocess.run(command, cwd=root, env=env, check=True, capture_output=True, timeout=3600)
    return optuna.load_study(study_name=STUDY, storage=storage)


def submitit(root: Path, trials: int) -> optuna.Study:
    launcher = ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=main", "hydra.launcher.cpus_per_task=1"]
    batch = [f"hydra.sweeper.n_jobs={CPUS}", "hydra.sweeper.n_workers=1", f"hydra.sweeper.n_trials={trials}"]
    subprocess.run(toy_command(*launcher, *batch, *SPACE), cwd=root, check=True, capture_output=True, timeout=3600)
    return optuna.load_study(study_name=STUDY, storage=open_storage(str(root / "optuna_journal.log")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    subprocess.run(["bash", str(REPO / "slurm" / "one_node_cluster.sh")], check=True)
    with tempfile.TemporaryDirectory() as tmp, servers.postgres_server(password=None) as postgres:
        root = Path(tmp)
        (root / "array").mkdir()
        (root / "submitit").mkdir()
        print(f"{'way':38} {'trials/hour':>11} {'idle CPU':>9}   ({args.trials} trials, {CPUS} CPUs)")
        for name, study in (
            (f"job array of {CPUS} workers", job_array(root / "array", postgres, args.trials)),
            (f"submitit launcher, n_jobs={CPUS}", submitit(root / "submitit", args.trials)),
        ):
            per_hour, idle = figures(study)
            print(f"{name:38} {per_hour:11.0f} {idle:9.0%}")


if __name__ == "__main__":
    main()

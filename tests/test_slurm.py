"""SLURM on a real one-node cluster (slurm/one_node_cluster.sh starts it from Debian's slurm-wlm and munge): a
sweep's workers as a job array (slurm/sweep_workers.sbatch) sharing one PostgreSQL study and one MLflow store, and
Hydra's submitit launcher dispatching this sweeper's trials as SLURM jobs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import optuna
import pytest
from mlflow.tracking import MlflowClient

from optuna_sweeper.outcomes import count

from .helpers import APP, REPO, STUDY, launched, load, run_toy

pytestmark = pytest.mark.slow

TRACKING = "tracking={experiment: slurm, tracking_uri: null, run_name: null, parent_run_id: null, tags: {}}"


@pytest.fixture(scope="module")
def slurm():
    missing = [tool for tool in ("sbatch", "slurmctld", "munged") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        message = f"a one-node SLURM cluster needs root and apt-get install slurm-wlm munge (missing: {missing})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    started = subprocess.run(
        ["bash", str(REPO / "slurm" / "one_node_cluster.sh")], capture_output=True, text=True, timeout=180
    )
    assert started.returncode == 0, started.stderr


def test_a_job_array_of_workers_shares_one_study_and_one_tracking_store(slurm, postgres_url, tmp_path):
    env = {
        **os.environ,
        "OPTUNA_STORAGE": postgres_url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",  # one node: a file every task can reach
        "PYTHON": sys.executable,
        "SWEEP_APP": str(APP),
    }
    array = subprocess.run(
        ["sbatch", "--wait", "--array=0-1", f"--output={tmp_path}/slurm-%A_%a.out",
         str(REPO / "slurm" / "sweep_workers.sbatch"), "hydra.sweeper.n_trials=6", "epoch_seconds=0.3", TRACKING],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    logs = "".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    assert array.returncode == 0, array.stderr + logs[-3000:]
    trials = optuna.load_study(study_name=STUDY, storage=postgres_url).get_trials(deepcopy=False)
    assert count(trials).counted == 6
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both array tasks took trials
    # The toy's sampler has one seed for every task; each task's command_index (its array index) parts their draws.
    drawn = [tuple(sorted(t.params.items())) for t in trials if t.params]
    assert len(set(drawn)) == len(drawn) >= 6  # rejected (width 32) trials drew params too
    tasks = sorted(tmp_path.glob("sweep-*/task-*"))
    assert len(tasks) == 2 and all(list(task.rglob("leaderboard.csv")) for task in tasks)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("slurm").experiment_id], max_results=100)
    assert {r.data.tags.get("optuna_trial") for r in runs} >= {str(t.number) for t in trials}


def test_the_submitit_launcher_runs_each_trial_as_a_slurm_job(slurm, tmp_path):
    result = run_toy(
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.partition=main",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_workers=1",
        "hydra.sweeper.n_trials=4",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load(tmp_path).get_trials(deepcopy=False)
    assert count(trials).counted == 4
    jobs = launched(tmp_path)
    assert jobs and all(job["slurm_job"] for job in jobs.values())  # every trained trial ran as a SLURM job
    assert len({job["slurm_job"] for job in jobs.values()}) == len(jobs)
    assert {job["pid"] for job in jobs.values()}.isdisjoint({os.getpid()})

"""Fault drill: a sweep (the toy app, two worker processes, MLflow on) is killed with SIGKILL at random moments (its
start-up, its trials, its final report), the command or one of its workers, ten times in a row; then the same
command runs to the end. The study must hold exactly n_trials counted trials with no number twice, no trial left
RUNNING, and every trial that ran must have exactly one MLflow run, in a final state, as must every sweep run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from optuna_sweeper.outcomes import Outcome, count, outcome_of

from .helpers import launched, load, run_toy, start_toy

pytestmark = pytest.mark.slow

N_TRIALS = 24
TRACKING = "tracking={experiment: drill, tracking_uri: null, run_name: null, parent_run_id: null, tags: {}}"
SWEEP = [f"hydra.sweeper.n_trials={N_TRIALS}", "epochs=2", "epoch_seconds=0.5", "width=choice(4, 8, 32)", TRACKING]
FINAL = {"FINISHED", "FAILED", "KILLED"}


def pids_of_session(sid: int) -> set[int]:
    """The processes of the sweep's session: the command and the workers it started."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # field 6 of stat: the session id
            found.add(int(stat.parent.name))
    return found


def kill_round(rng: random.Random, cwd: Path) -> str:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    sweep = start_toy(*SWEEP, "hydra.sweeper.n_workers=2", cwd=cwd, start_new_session=True, **quiet)
    time.sleep(rng.uniform(2.0, 16.0))  # start-up takes ~6 s with MLflow; then trials, then the final report
    workers = sorted(pids_of_session(sweep.pid) - {sweep.pid})
    target = rng.choice(["command", "worker"]) if workers else "command"
    if sweep.poll() is not None:
        return "none (the sweep had finished)"
    os.kill(sweep.pid if target == "command" else rng.choice(workers), signal.SIGKILL)
    try:
        sweep.wait(timeout=120)  # a killed worker: the command goes on (and may finish the study)
    finally:
        deadline = time.time() + 60  # a killed command: its worker notices and stops by itself
        while pids_of_session(sweep.pid) and time.time() < deadline:
            time.sleep(0.5)
        left = pids_of_session(sweep.pid)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes of the killed sweep ran on: {left}"
    return target


def test_ten_kill_9_at_random_points_then_a_rerun_lose_and_duplicate_nothing(tmp_path):
    rng = random.Random(20261122)
    targets = [kill_round(rng, tmp_path) for _ in range(10)]
    print("killed:", targets)
    assert {"command", "worker"} <= set(targets)
    final = run_toy(*SWEEP, "hydra.sweeper.n_workers=2", cwd=tmp_path, timeout=300)
    assert final.returncode == 0

    study = load(tmp_path)
    numbers = [t.number for t in study.trials]
    assert numbers == list(range(len(numbers)))  # no number twice, none skipped
    assert count(study.trials).counted == N_TRIALS
    assert not [t for t in study.trials if outcome_of(t) == Outcome.RUNNING]
    assert set(launched(tmp_path)) <= set(numbers)  # every launched job belongs to a trial

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("drill").experiment_id], max_results=5000)
    sweeps = [r for r in runs if r.data.tags.get("optuna_role") == "sweep"]
    assert sweeps and all(r.info.status in FINAL for r in sweeps)
    per_trial = Counter(int(r.data.tags["optuna_trial"]) for r in runs if "optuna_trial" in r.data.tags)
    ran = [t for t in study.trials if outcome_of(t) != Outcome.WAITING]
    assert {t.number: per_trial[t.number] for t in ran} == {t.number: 1 for t in ran}
    trial_runs = [r for r in runs if "optuna_trial" in r.data.tags]
    assert all(r.info.status in FINAL for r in trial_runs)
    for run in trial_runs:  # and each run says what became of its trial
        assert run.data.tags["optuna_state"] == outcome_of(study.trials[int(run.data.tags["optuna_trial"])]).value

"""The two-stage protocol on the toy app (no training): stage 1 prunes at its rungs but never at the last epoch;
stage 2 retrains the top-k trials over seeds, shared by the workers, each run evaluating its own test once, as
MLflow children of the sweep tagged as finalists; a re-run finishes stage 2 without redoing a run; the winner's
whole recipe is exported with its stage-2 figures."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
import yaml
from mlflow.tracking import MlflowClient

from optuna_sweeper.finalists import finalist_study_name
from optuna_sweeper.outcomes import Attr, Outcome, count, outcome_of
from optuna_sweeper.study import STAGE_ONE_DEADLINE

from .helpers import STUDY, launched, launched_finals, load, run_toy, start_toy

pytestmark = pytest.mark.slow

TRACKING = "tracking={experiment: two, tracking_uri: null, run_name: null, parent_run_id: null, tags: {}}"
STAGE_TWO = [
    "hydra.sweeper.finalists.top_k=2",
    "hydra.sweeper.finalists.seeds=[1,2,3]",
    "hydra.sweeper.finalists.overrides=['epochs=6']",
    "hydra.sweeper.finalists.report=[test_acc]",
]


def test_stage_one_prunes_at_rungs_never_at_the_last_epoch(tmp_path):
    result = run_toy(
        "hydra.sweeper.n_trials=12",
        "hydra.sweeper.n_workers=1",
        "hydra/sweeper/pruner=successive_halving",
        "hydra.sweeper.pruner.min_resource=1",
        "hydra.sweeper.pruner.reduction_factor=2",
        "hydra/sweeper/sampler=random",
        "epochs=3",
        cwd=tmp_path,
    )
    assert result.returncode == 0
    trials = load(tmp_path).trials
    pruned = [t for t in trials if outcome_of(t) == Outcome.PRUNED]
    assert pruned, "successive halving should stop a poor trial at a rung"
    assert all(t.user_attrs[Attr.EPOCHS_RUN] < 3 for t in pruned)  # epoch 3 of 3 is never a reason to stop
    trained = [t for t in trials if outcome_of(t) in (Outcome.COMPLETE, Outcome.PRUNED)]
    assert all(t.intermediate_values for t in trained)  # learning curves recorded for every trial


def test_stage_two_retrains_the_top_k_over_seeds_in_every_worker_and_exports_the_winner(tmp_path):
    result = run_toy(
        "hydra.sweeper.n_trials=8",
        "hydra.sweeper.n_workers=2",
        "epoch_seconds=0.2",
        TRACKING,
        *STAGE_TWO,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0
    stage_one, stage_two = load(tmp_path), load(tmp_path, finalist_study_name(STUDY))
    trained = sorted((t for t in stage_one.trials if outcome_of(t) == Outcome.COMPLETE), key=lambda t: -t.value)
    top = [t.number for t in trained[:2]]
    runs = stage_two.trials
    assert sorted((r.user_attrs[Attr.FINALIST_OF], r.user_attrs[Attr.SEED]) for r in runs) == sorted(
        (n, s) for n in top for s in (1, 2, 3)
    )
    assert all(outcome_of(r) == Outcome.COMPLETE for r in runs)
    # Each run trained the stage-2 recipe with its seed, and evaluated test once (it returned one test figure).
    jobs = launched_finals(tmp_path)
    assert len(jobs) == 6 and {j["epochs"] for j in jobs.values()} == {6}
    assert Counter(j["seed"] for j in jobs.values()) == {1: 2, 2: 2, 3: 2}
    assert all("test_acc" in r.user_attrs[Attr.METRICS] for r in runs)
    assert not set(launched(tmp_path)) - {t.number for t in stage_one.trials}
    # Stage 1's best is not always the winner: stage 2's mean validation decides.
    out = result.stdout
    assert "Stage 2: the top 2 of stage 1, retrained with epochs=6, seeds 1, 2, 3:" in out
    assert "final val_acc" in out and "final test_acc" in out and "Winner (best mean stage-2 val_acc)" in out
    assert "stage 2 [6/6]" in out  # the progress view covers stage 2 too
    assert "Launching 1 jobs locally" not in out + result.stderr  # launch lines are in launches.log
    assert next(tmp_path.glob("multirun/*/*/launches.log")).read_text().count("trial") >= 8 + 6

    # MLflow: the runs are children of the sweep run, tagged as finalists, in a final state.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    all_runs = client.search_runs([client.get_experiment_by_name("two").experiment_id], max_results=500)
    (sweep,) = [r for r in all_runs if r.data.tags.get("optuna_role") == "sweep"]
    finals = [r for r in all_runs if r.data.tags.get("optuna_role") == "finalist"]
    assert len(finals) == 6 and all(r.data.tags["mlflow.parentRunId"] == sweep.info.run_id for r in finals)
    assert all(r.info.status == "FINISHED" for r in finals)
    assert {"final_val_acc_mean", "final_test_acc_mean", "final_test_acc_sd"} <= set(sweep.data.metrics)

    best = yaml.safe_load(next(tmp_path.glob("multirun/*/*/best_trial.yaml")).read_text())
    assert best["chosen_by"].startswith("stage 2") and best["seeds"] == [1, 2, 3]
    assert "epochs=6" in best["overrides"] and not [o for o in best["overrides"] if o.startswith("seed=")]
    assert set(best["final"]) == {"val_acc", "test_acc"}


def test_stage_one_minutes_stops_every_worker_at_one_deadline_and_stage_two_still_runs_in_full(tmp_path):
    result = run_toy(
        "hydra.sweeper.n_trials=500",
        "hydra.sweeper.n_workers=2",
        "hydra.sweeper.stage_one_minutes=0.75",  # long enough for the worker to start on a loaded machine
        "epochs=3",
        "epoch_seconds=0.1",
        "hydra.sweeper.finalists.top_k=1",
        "hydra.sweeper.finalists.seeds=[1,2]",
        "hydra.sweeper.finalists.overrides=['epochs=6']",
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    stage_one, stage_two = load(tmp_path), load(tmp_path, finalist_study_name(STUDY))
    counted = count(stage_one.trials).counted  # as the summary counts them
    assert 0 < counted < 500
    # The deadline is 45 s after the command started, which was before its first trial: no trial starts later.
    starts = [t.datetime_start.timestamp() for t in stage_one.trials]
    assert max(starts) <= min(starts) + 45
    assert len({t.user_attrs[Attr.WORKER] for t in stage_one.trials}) == 2  # the worker stopped by the same clock
    assert max(starts) <= stage_one.user_attrs[STAGE_ONE_DEADLINE] <= min(starts) + 45  # recorded for other commands
    assert "Stage 1 stops starting trials at" in result.stdout + result.stderr
    assert len(stage_two.trials) == 2 and all(outcome_of(r) == Outcome.COMPLETE for r in stage_two.trials)
    assert {j["epochs"] for j in launched_finals(tmp_path).values()} == {6}  # in full, past the deadline
    assert f"Stage 1 stopped at hydra.sweeper.stage_one_minutes=0.75 with {counted} of n_trials=500" in (result.stdout)
    assert "Winner (best mean stage-2 val_acc)" in result.stdout


def test_a_second_command_on_the_study_stops_stage_one_at_the_first_ones_deadline(tmp_path):
    """As the tasks of a SLURM job array do: each is a sweep command of its own, started when the cluster gets to
    it, and all stop stage 1 at the deadline of the first (not 5 minutes after the second started)."""
    args = ["hydra.sweeper.n_trials=500", "hydra.sweeper.n_workers=1", "epochs=3", "epoch_seconds=0.1"]
    first = start_toy(*args, "hydra.sweeper.stage_one_minutes=0.5", "hydra.sweeper.command_index=0", cwd=tmp_path)
    wait_until = time.time() + 60
    while not (tmp_path / "jobs").is_dir() and time.time() < wait_until:  # its deadline is recorded by then
        time.sleep(0.2)
    second = run_toy(*args, "hydra.sweeper.stage_one_minutes=5", "hydra.sweeper.command_index=1", cwd=tmp_path)
    assert first.wait(timeout=120) == 0 and second.returncode == 0, second.stderr[-2000:]
    study = load(tmp_path)
    deadline = study.user_attrs[STAGE_ONE_DEADLINE]
    by_worker = Counter(t.user_attrs[Attr.WORKER] for t in study.trials)
    assert len(by_worker) == 2, by_worker  # both commands ran trials
    assert max(t.datetime_start.timestamp() for t in study.trials) <= deadline
    assert "Stage 1's deadline is the one another command on this study set" in second.stdout + second.stderr


def test_a_rerun_after_a_kill_in_stage_two_finishes_it_without_redoing_a_run(tmp_path):
    args = ["hydra.sweeper.n_trials=4", "hydra.sweeper.n_workers=1", "epoch_seconds=0.3", *STAGE_TWO]
    sweep = start_toy(*args, cwd=tmp_path)
    deadline = time.time() + 120
    while len(launched_finals(tmp_path)) < 2 and time.time() < deadline:
        time.sleep(0.2)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    before = {n: j["pid"] for n, j in launched_finals(tmp_path).items()}
    assert 2 <= len(before) < 6

    result = run_toy(*args, cwd=tmp_path, timeout=300)
    assert result.returncode == 0
    runs = load(tmp_path, finalist_study_name(STUDY)).trials
    done = [r for r in runs if outcome_of(r) == Outcome.COMPLETE]
    assert len({(r.user_attrs[Attr.FINALIST_OF], r.user_attrs[Attr.SEED]) for r in done}) == len(done) == 6
    # Runs finished before the kill were not trained again (their job files still name the killed process).
    after = launched_finals(tmp_path)
    finished_before = [r.number for r in done if r.number in before and after[r.number]["pid"] == before[r.number]]
    assert finished_before, "the runs done before the kill are kept"
    assert "Winner (best mean stage-2 val_acc)" in result.stdout

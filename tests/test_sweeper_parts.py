"""The sweeper's pure parts, called directly (no subprocess): storage strings, settings, the outcome vocabulary and
its counts, objective values, the leaderboard and summary, the best-trial files and the app's exporter."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from mnist_sweep.trial import export_found_recipe
from optuna_sweeper.errors import SweepError, one_line, raised_while_interrupted
from optuna_sweeper.outcomes import Attr, Outcome, count, outcome_of
from optuna_sweeper.progress import Progress
from optuna_sweeper.publish import best_trial, publish
from optuna_sweeper.settings import (
    DEFAULT_WORKERS,
    default_study_name,
    directions_of,
    objectives_of,
    pid_on_this_host,
    resolve,
    worker_name,
)
from optuna_sweeper.space import SearchSpace, encode_param, override_key, override_text, parse_search_space
from optuna_sweeper.storage import in_memory, redact, resolve_storage
from optuna_sweeper.study import STAGE_ONE_DEADLINE, make_sampler, shared_deadline
from optuna_sweeper.summary import format_table, leaderboard_rows, summarise
from optuna_sweeper.trials import objective_values
from optuna_sweeper.workers import STOP_SIGNAL, listen_for_stop

from .helpers import REPO, compose_config

DIST = {"x": FloatDistribution(0, 1), "head": CategoricalDistribution(("gap", "linear"))}


def trial(state: TrialState, value: float | None = None, **attrs) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=state,
        value=value,
        params={"x": 0.5, "head": "gap"},
        distributions=DIST,
        user_attrs=attrs,
        intermediate_values={1: 0.4} if state == TrialState.PRUNED else None,
    )


def study_of(*trials: optuna.trial.FrozenTrial, directions=("maximize",)) -> optuna.Study:
    study = optuna.create_study(directions=list(directions), study_name="s")
    study.add_trials(trials)
    return study


# ------------------------------------------------------------------ storage
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://sweeper:s3cret@db:5432/study", "postgresql://sweeper:***@db:5432/study"),
        ("postgresql+psycopg://u:p@w:rd@h/db", "postgresql+psycopg://u:***@h/db"),
        ("sqlite:///optuna.db", "sqlite:///optuna.db"),
        ("optuna_journal.log", "optuna_journal.log"),
    ],
)
def test_redact_hides_the_password_only(url, shown):
    assert redact(url) == shown


def test_resolve_storage_makes_journal_paths_absolute_and_null_means_the_default_journal(tmp_path):
    assert resolve_storage("j.log", tmp_path) == str(tmp_path / "j.log")
    assert resolve_storage(None, tmp_path) == str(tmp_path / "optuna_journal.log")
    assert resolve_storage("sqlite:///x.db", tmp_path) == "sqlite:///x.db"
    assert resolve_storage("postgresql://u:p@h/d", tmp_path).startswith("postgresql")


@pytest.mark.parametrize(
    ("url", "memory"), [("sqlite:///:memory:", True), ("sqlite://", True), ("sqlite:///f.db", False), ("j.log", False)]
)
def test_in_memory(url, memory):
    assert in_memory(url) == memory


# ------------------------------------------------------------------ settings
def settings(**overrides):
    base = {
        "direction": "maximize",
        "objectives": ["val_acc", "n_params"],
        "study_name": None,
        "storage": "optuna_journal.log",
        "n_trials": 4,
        "n_workers": None,
        "n_jobs": None,
        "max_failure_rate": 0.5,
        "worker_id": 0,
        "command_index": 0,
        "sweep_id": None,
        "stage_one_minutes": None,
        "stage_one_deadline": None,
    }
    return OmegaConf.create({**base, **overrides})


def test_settings_defaults_two_workers_and_a_stable_study_name(tmp_path):
    run = resolve(settings(), "app", str(tmp_path), "multirun/x")
    assert run.n_workers == DEFAULT_WORKERS and run.n_jobs == 1 and not run.notes
    assert run.study_name == "app-max_val_acc" and run.sweep_dir == tmp_path / "multirun/x"
    assert run.sweep_id == worker_name() and not run.is_worker


def test_stage_one_deadline_counts_from_the_command_and_a_worker_takes_its_commands(tmp_path):
    assert resolve(settings(), "app", str(tmp_path), "m").stage_one_deadline is None  # no limit by default
    before = time.time()
    deadline = resolve(settings(stage_one_minutes=1.5), "app", str(tmp_path), "m").stage_one_deadline
    assert before + 90 <= deadline <= time.time() + 90
    worker = resolve(settings(stage_one_minutes=1.5, stage_one_deadline=123.0, worker_id=1), "app", str(tmp_path), "m")
    assert worker.stage_one_deadline == 123.0  # the command's, whenever the worker started
    with pytest.raises(SweepError, match=r"stage_one_minutes must be more than 0, got -1"):
        resolve(settings(stage_one_minutes=-1), "app", str(tmp_path), "m")


def test_hydra_optuna_sweeper_keys_keep_their_meaning_and_say_where_they_differ(tmp_path):
    run = resolve(settings(storage=None, n_jobs=1), "app", str(tmp_path), "m")
    assert run.n_workers == 1 and run.n_jobs == 1  # n_jobs given: one process, as hydra-optuna-sweeper runs it
    assert run.storage_url == str(tmp_path / "optuna_journal.log")
    assert len(run.notes) == 2 and all(len(note.splitlines()) == 1 for note in run.notes)
    assert "hydra.sweeper.storage=null" in run.notes[0] and "hydra.sweeper.n_jobs=1" in run.notes[1]
    assert resolve(settings(n_jobs=3, n_workers=2), "app", str(tmp_path), "m").n_workers == 2  # both given: as said


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_workers": 0}, "n_workers must be 1 or more"),
        ({"n_jobs": 0}, "n_jobs must be 1 or more"),
        ({"n_workers": 2, "storage": "sqlite:///:memory:"}, "in-memory database"),
        ({"max_failure_rate": -1}, "max_failure_rate"),
        ({"direction": "up"}, "direction must be maximize, minimize"),
        ({"direction": ["maximize", "minimize", "minimize"]}, "names only"),
    ],
)
def test_bad_settings_are_one_paragraph_errors(tmp_path, overrides, message):
    with pytest.raises(SweepError, match=message) as info:
        resolve(settings(**overrides), "app", str(tmp_path), "m")
    assert "\n" not in str(info.value)


def test_directions_objectives_and_study_name():
    assert directions_of("minimize") == ["minimize"] and directions_of(["maximize", "minimize"]) == [
        "maximize",
        "minimize",
    ]
    assert objectives_of(["a", "b", "c"], ["maximize"]) == ["a"]
    assert default_study_name("app", ["maximize", "minimize"], ["a", "b"]) == "app-max_a-min_b"


def test_worker_names_are_parsed_on_this_host_only():
    assert pid_on_this_host(worker_name(1234)) == 1234
    assert pid_on_this_host("elsewhere:1234") is None and pid_on_this_host("") is None


# ------------------------------------------------------------------ vocabulary and counts
def test_outcomes_decode_the_user_attrs_in_one_place():
    assert outcome_of(trial(TrialState.COMPLETE, 0.9)) == Outcome.COMPLETE
    assert outcome_of(trial(TrialState.COMPLETE, 0.0, **{Attr.REJECTED: True})) == Outcome.REJECTED
    assert outcome_of(trial(TrialState.FAIL, **{Attr.INTERRUPTED: True})) == Outcome.INTERRUPTED
    assert outcome_of(trial(TrialState.FAIL)) == Outcome.FAIL
    assert outcome_of(trial(TrialState.PRUNED)) == Outcome.PRUNED


def test_counts_come_from_the_trials_and_can_be_narrowed_to_one_sweep():
    mine, other = {Attr.SWEEP: "h:1"}, {Attr.SWEEP: "h:2"}
    trials = [
        trial(TrialState.COMPLETE, 0.9, **mine),
        trial(TrialState.COMPLETE, 0.0, **mine, **{Attr.REJECTED: True}),
        trial(TrialState.PRUNED, **mine),
        trial(TrialState.FAIL, **mine, **{Attr.INTERRUPTED: True}),
        trial(TrialState.FAIL, **other),
    ]
    every = count(trials)
    assert (every.complete, every.rejected, every.pruned, every.interrupted, every.failed) == (1, 1, 1, 1, 1)
    assert every.counted == 3  # rejected and interrupted trials don't count towards n_trials
    assert count(trials, sweep="h:1").failed == 0 and count(trials, sweep="h:2").failed == 1


def test_ctrl_c_that_a_library_turned_into_another_error_is_still_an_interrupt(monkeypatch, tmp_path):
    """Optuna's journal lock, interrupted between its rename and its unlink, raises FileNotFoundError from its own
    `except BaseException`: the trial must be queued again as interrupted, not failed."""
    from optuna.storages.journal import JournalFileOpenLock

    lock = JournalFileOpenLock(str(tmp_path / "journal.log"))
    assert lock.acquire()

    def interrupted_rename(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.rename", interrupted_rename)
    with pytest.raises(BaseException) as raised:  # FileNotFoundError in Optuna 5.0; a fixed Optuna: the interrupt
        lock.release()
    assert raised_while_interrupted(raised.value)
    assert not raised_while_interrupted(FileNotFoundError("a plain failure"))
    assert not raised_while_interrupted(None)


def test_a_worker_whose_command_is_gone_before_it_listens_stops_at_once():
    previous = signal.getsignal(STOP_SIGNAL)
    try:
        with pytest.raises(KeyboardInterrupt):
            listen_for_stop(os.getppid() + 4_000_000, poll_s=0.05)  # a command pid that is not our parent (any more)
            time.sleep(10)
    finally:
        signal.signal(STOP_SIGNAL, previous)


# Each process waits for the same instant, then opens the store as a sweep command does.
OPEN_AT = """
import sys, time
from optuna_sweeper.mlflow_runs import open_experiment
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
open_experiment(sys.argv[1], "together", attempts=1)
"""


@pytest.mark.slow
def test_commands_that_open_a_fresh_sqlite_mlflow_store_at_the_same_instant_all_succeed(tmp_path):
    """Without the creation lock, three such processes fail about three times in four (alembic's migrations run
    twice: "duplicate column name", "table _alembic_tmp_... already exists"), and the store stays broken."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    start = time.time() + 8  # after the three have imported MLflow
    processes = [
        subprocess.Popen([sys.executable, "-c", OPEN_AT, uri, str(start)], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [e[-1500:] for e in errors]
    assert len(MlflowClient(uri).search_experiments(filter_string="name = 'together'")) == 1


def test_progress_says_when_stage_one_stops_where_its_time_limit_comes_before_the_eta():
    study = study_of()
    lines = io.StringIO()
    view = Progress(study, 100, ["val_acc"], stream=lines, deadline=time.time() + 90)
    view.started = time.monotonic() - 600  # ten minutes for the first trial: 99 more would take 16 hours
    study.add_trial(trial(TrialState.COMPLETE, 0.9))
    view.poll()
    assert "[  1/100] trial 0 COMPLETE val_acc=0.9" in lines.getvalue()
    assert ", stage 1 stops in 1m2" in lines.getvalue() and "ETA" not in lines.getvalue()
    view.deadline = time.time() + 10 * 3600  # a limit after the ETA: the ETA it is
    study.add_trial(trial(TrialState.COMPLETE, 0.8))
    view.poll()
    assert ", ETA " in lines.getvalue().splitlines()[-1]


def rejected(params_over: float, macs_over: float = -5.0) -> optuna.trial.FrozenTrial:
    return create_trial(
        value=0.0,
        params={"x": 0.5, "head": "gap"},
        distributions=DIST,
        user_attrs={Attr.REJECTED: True, Attr.N_PARAMS: int(20_000 + params_over)},
        constraints={"params_over_budget": params_over, "macs_over_budget": macs_over},
    )


def test_progress_tells_a_burst_of_rejections_in_one_line_and_a_lone_one_in_its_own(monkeypatch):
    study = study_of()
    lines = io.StringIO()
    view = Progress(study, 30, ["val_acc"], stream=lines)
    study.add_trial(rejected(2_912))  # trial 0, alone: told when trial 1's line comes
    study.add_trial(trial(TrialState.COMPLETE, 0.9))
    view.poll()
    for params_over, macs_over in [(44_050, 9_417_652), (-100, 387_484), (4_776, -1), (10_048, 910_690)]:
        study.add_trial(rejected(params_over, macs_over))  # trials 2-5
    view.poll()
    assert len(lines.getvalue().splitlines()) == 2  # the burst is held while it may go on
    study.add_trial(trial(TrialState.PRUNED))  # trial 6
    study.add_trial(rejected(1))  # trial 7, then a quiet spell: told alone at the next poll after it
    view.poll()
    monkeypatch.setattr("optuna_sweeper.progress.BURST_QUIET_S", 0.0)
    view.poll()
    study.add_trial(rejected(5))
    study.add_trial(rejected(6))  # trials 8 and 9, held until the view stops
    view.stop()
    told = lines.getvalue().splitlines()
    assert [line.split("]")[1].split(" over budget")[0].split(" | ")[0] for line in told] == [
        " trial 0 REJECTED n_params=22,912",
        " trial 1 COMPLETE val_acc=0.9",
        " trials 2-5 REJECTED (4, untrained)",
        " trial 6 PRUNED val_acc=0.4 at step 1",
        " trial 7 REJECTED n_params=20,001",
        " trials 8-9 REJECTED (2, untrained)",
    ]
    assert told[0].startswith("[ 0/30]") and "over budget: params by 2,912 | 0m" in told[0]  # no best before trial 1
    assert "over budget: params (3) by 4,776 to 44,050, macs (3) by 387,484 to 9,417,652 | best 0.9" in told[2]
    assert told[2].startswith("[ 1/30]") and told[3].startswith("[ 2/30]")
    assert "over budget: params (2) by 5 to 6 | best" in told[5]


def test_stage_one_deadline_is_shared_while_it_is_ahead_and_renewed_once_it_has_passed():
    study = study_of()
    now = time.time()
    assert shared_deadline(study, now + 60) == now + 60  # the first command: its own, recorded
    assert shared_deadline(study, now + 300) == now + 60  # another on the same study, while it is ahead
    study.set_user_attr(STAGE_ONE_DEADLINE, now - 1)  # passed: a command run again gets a fresh one
    assert shared_deadline(study, now + 300) == now + 300 == study.user_attrs[STAGE_ONE_DEADLINE]


# ------------------------------------------------------------------ objective values
@pytest.mark.parametrize(
    ("outcome", "n_directions", "values", "problem"),
    [
        ({"val_acc": 0.9, "n_params": 100.0}, 1, [0.9], ""),
        ({"val_acc": 0.9, "n_params": 100.0}, 2, [0.9, 100.0], ""),
        (0.7, 1, [0.7], ""),
        ({"acc": 0.9}, 1, [], "which has no"),
        ({"val_acc": float("nan")}, 1, [], "non-finite"),
        (0.7, 2, [], "1 objective(s) for 2"),
    ],
)
def test_objective_values(outcome, n_directions, values, problem):
    objectives = ["val_acc", "n_params"][:n_directions]
    got, why = objective_values(outcome, objectives, n_directions)
    assert got == values and (problem in why if problem else why == "")


# ------------------------------------------------------------------ summary, leaderboard, publication
def test_leaderboard_lists_results_first_best_first_and_marks_rejected_trials():
    study = study_of(
        trial(TrialState.COMPLETE, 0.8, **{Attr.N_PARAMS: 700}),
        trial(TrialState.COMPLETE, 0.0, **{Attr.REJECTED: True, Attr.N_PARAMS: 9000}),
        trial(TrialState.COMPLETE, 0.95, **{Attr.N_PARAMS: 900}),
        trial(TrialState.PRUNED),
    )
    rows = leaderboard_rows(study, ["val_acc"])
    assert [(r["trial"], r["state"]) for r in rows] == [
        (2, "COMPLETE"),
        (0, "COMPLETE"),
        (3, "PRUNED"),
        (1, "REJECTED"),
    ]
    assert rows[0]["n_params"] == 900 and rows[2]["val_acc"] == 0.4 and rows[3]["val_acc"] is None
    table = format_table(rows, limit=2).splitlines()
    assert table[0].split()[:3] == ["trial", "state", "val_acc"] and table[-1] == "... 2 more in leaderboard.csv"


def test_summary_and_its_publication(tmp_path, capsys):
    overrides = ["x=0.5", "head=gap"]
    study = study_of(
        trial(TrialState.COMPLETE, 0.8, **{Attr.SWEEP: "h:1", Attr.OVERRIDES: overrides, Attr.N_PARAMS: 700}),
        trial(TrialState.FAIL, **{Attr.SWEEP: "h:9"}),
    )
    summary = summarise(study, "s", "journal", 4, ["val_acc"], sweep="h:1")
    assert summary.best.number == 0 and summary.this_run.complete == 1 and summary.this_run.failed == 0
    assert "this run 1 complete, 0 pruned, 0 rejected over budget (not trained), 0 failed" in summary.headline()
    assert "the study now holds 2 trials (2 count towards n_trials=4)" in summary.headline()

    exported = []
    publish(summary, study, ["val_acc"], tmp_path, "FINISHED", export=lambda t: exported.append(t) or tmp_path)
    assert [best.number for best in exported] == [summary.best.number]
    assert exported[0].overrides == ["x=0.5", "head=gap"] and exported[0].chosen_by == "stage 1"
    assert "Best trial 0 (chosen by stage 1) written to" in capsys.readouterr().out
    assert {p.name for p in tmp_path.iterdir()} == {"leaderboard.csv", "summary.txt", "best_trial.yaml"}
    best = yaml.safe_load((tmp_path / "best_trial.yaml").read_text())
    assert best == {
        "study": "s",
        "trial": 0,
        "chosen_by": "stage 1",
        "values": {"val_acc": 0.8},
        "n_params": 700,
        "overrides": overrides,
    }


@pytest.mark.parametrize("search,dataset", [("default", "mnist"), ("fashion_mnist", "fashion_mnist")])
def test_the_apps_exporter_writes_the_whole_recipe_into_the_launch_dir_and_hydra_finds_it(
    tmp_path, monkeypatch, search, dataset
):
    stages = "[{widths:[8,12],after:pool},{widths:[16,10]}]"
    overrides = [
        "model=family",
        f"model.stages={stages}",
        "model.head=gap_direct",
        "optimizer.lr=0.05",
        "augmentation=affine_light",
        "trainer.epochs=15",
        "trainer.evaluate_test=true",
        "trainer.progress=false",
        f"+hparams_search={search}",
        "++optuna={storage:x,study_name:y}",
        "tracking.log_model=true",
    ]
    frozen = trial(TrialState.COMPLETE, 0.99, **{Attr.OVERRIDES: overrides, Attr.N_PARAMS: 1234})
    best = dataclasses.replace(
        best_trial(frozen, "my study", ["val_acc"], out_dir=None),
        final={"val_acc": (0.994, 0.0004), "test_acc": (0.9941, 0.0003)},
        seeds=[1, 2, 3],
    )
    monkeypatch.chdir(tmp_path)  # the launch directory
    cfg = compose_config(*[o for o in overrides if not o.startswith("++")], with_hydra=True)
    path = export_found_recipe(cfg, best)
    assert path == tmp_path / "found_configs" / "experiment" / "found" / "my_study.yaml"
    assert not list((REPO / "conf" / "experiment").glob("found*")), "nothing may be written into the package"
    text = path.read_text()
    assert (
        "test_acc 0.9941 ± 0.0003" in text and "python -m mnist_sweep -m experiment=found/my_study seed=1,2,3" in text
    )
    preset = yaml.safe_load(text)
    assert {"override /model": "family"} in preset["defaults"]
    assert {"override /augmentation": "affine_light"} in preset["defaults"]
    # The dataset its search config chose (no override names it) is pinned too: the preset retrains on it.
    assert {"override /dataset": dataset} in preset["defaults"]
    assert not [d for d in preset["defaults"] if "hparams_search" in str(d) or "hydra" in str(d)]
    assert "optuna" not in preset and "tracking" not in preset and "progress" not in preset["trainer"]
    # Hydra finds it in the launch directory through conf/config.yaml's search path: no searchpath to type.
    again = compose_config("experiment=found/my_study", with_hydra=True)
    assert again.model.stages[1].widths == [16, 10] and again.model.head == "gap_direct"
    assert again.optimizer.lr == 0.05 and again.trainer.epochs == 15 and again.trainer.evaluate_test
    assert again.hydra.runtime.choices["augmentation"] == "affine_light"
    assert again.model.name == "found_my_study" and again.dataset.name == dataset


# ------------------------------------------------------------------ small helpers
def test_override_helpers():
    assert override_key("++optuna.x=1") == "optuna.x" and override_key("~a.b") == "a.b"
    assert override_text(8000) == "8000" and override_text("family") == "family"
    assert override_text([1, 2]) == "[1,2]"
    assert encode_param(CategoricalDistribution(("a", "[1,2]")), [1, 2]) == "[1,2]"
    assert encode_param(FloatDistribution(0, 1), 0.5) == 0.5


def test_one_line_folds_a_message_into_a_sentence():
    assert one_line(ValueError("bad\n   thing")) == "bad thing."
    assert one_line(ValueError("done.")) == "done." and one_line(ValueError()) == "ValueError."


def test_every_trial_ends_with_exactly_one_mlflow_run_in_a_final_state(tmp_path):
    from mlflow.tracking import MlflowClient

    from optuna_sweeper.mlflow_runs import SweepRuns

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = OmegaConf.create({"tracking_uri": uri, "experiment": "e"})
    client = MlflowClient(uri)
    # An earlier command of the study, killed with -9: its sweep run and the run of the trial its worker was training.
    dead = SweepRuns(tracking, "s", {}, parent_id=None, sweep_id=worker_name(2**22 + 1))
    lost = client.create_run(dead.experiment_id, tags={**dead.trial_tags(3, Outcome.RUNNING)})
    other = client.create_run(dead.experiment_id, tags={**dead.trial_tags(4, Outcome.RUNNING)})

    runs = SweepRuns(tracking, "s", {}, parent_id=None, sweep_id=worker_name())
    runs.end_dead_sweeps(is_dead=lambda command: command == worker_name(2**22 + 1))
    assert client.get_run(dead.parent_id).info.status == "KILLED"
    assert client.get_run(runs.parent_id).info.status == "RUNNING"

    runs.mark_trial(3, Outcome.INTERRUPTED)  # its worker died: the run it left RUNNING ends KILLED
    assert client.get_run(lost.info.run_id).info.status == "KILLED"
    assert client.get_run(lost.info.run_id).data.tags["optuna_state"] == "INTERRUPTED"
    assert client.get_run(other.info.run_id).info.status == "RUNNING"  # another trial's run is left alone

    runs.mark_trial(7, Outcome.FAIL)  # never reached a job (e.g. its model could not be built): a run of its own
    (made,) = client.search_runs([runs.experiment_id], "tags.optuna_trial = '7'")
    assert made.info.status == "FAILED" and made.data.tags["optuna_state"] == "FAIL"
    assert made.info.run_name == "trial-7-fail"  # says in the runs table why it has no metrics
    runs.mark_trial(7, Outcome.FAIL)  # and only one
    assert len(client.search_runs([runs.experiment_id], "tags.optuna_trial = '7'")) == 1

    # A process killed after the study finished trial 4 (a recovery's requeue) but before it marked trial 4's run:
    # the next command ends the run from the study's state; a trial the study still runs keeps its run RUNNING.
    # Trial 11 was requeued before it reached a job and the process died before making its run: it gets one.
    # Trial 10's job finished its run, and its process was killed after telling the study but before marking the run.
    live = client.create_run(runs.experiment_id, tags={**runs.trial_tags(9, Outcome.RUNNING)})
    job_tags = {"mlflow.parentRunId": runs.parent_id, "optuna_study": "s", "optuna_trial": "10"}
    finished = client.create_run(runs.experiment_id, tags=job_tags)
    client.set_terminated(finished.info.run_id, "FINISHED")
    states = {3: Outcome.INTERRUPTED, 4: Outcome.INTERRUPTED, 7: Outcome.FAIL, 9: Outcome.RUNNING}
    runs.settle_trial_runs({**states, 10: Outcome.PRUNED, 11: Outcome.INTERRUPTED, 12: Outcome.WAITING})
    assert client.get_run(finished.info.run_id).data.tags["optuna_state"] == "PRUNED"
    assert client.get_run(finished.info.run_id).info.status == "FINISHED"
    assert client.get_run(other.info.run_id).info.status == "KILLED"
    assert client.get_run(other.info.run_id).data.tags["optuna_state"] == "INTERRUPTED"
    assert client.get_run(live.info.run_id).info.status == "RUNNING"
    assert client.get_run(runs.parent_id).info.status == "RUNNING"  # the sweep's own run has no trial tag
    (made,) = client.search_runs([runs.experiment_id], "tags.optuna_trial = '11'")
    assert made.info.status == "KILLED" and made.data.tags["optuna_state"] == "INTERRUPTED"
    assert not client.search_runs([runs.experiment_id], "tags.optuna_trial = '12'")  # queued: nothing to settle
    trial_runs = [r for r in runs.search_all("tags.optuna_study = 's'") if "optuna_trial" in r.data.tags]
    per_trial = Counter(r.data.tags["optuna_trial"] for r in trial_runs)
    assert set(per_trial.values()) == {1}  # still exactly one run per trial


# ------------------------------------------------------------------ stage 2 and pruning, in parts
class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_a_trial_is_pruned_at_any_step_but_its_last():
    from optuna_sweeper.job import TrialLink

    study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    link = TrialLink(study.ask(), pruning=True)
    link.report(15, 0.99, last=True)  # finished: reported, never thrown away
    assert link.trial.storage.get_trial(link.trial._trial_id).intermediate_values == {15: 0.99}
    with pytest.raises(optuna.TrialPruned):
        TrialLink(study.ask(), pruning=True).report(3, 0.5)


def test_learning_curves_are_recorded_without_a_pruner():
    from optuna_sweeper.job import TrialLink

    study = optuna.create_study(direction="maximize")
    link = TrialLink(study.ask(), pruning=False)
    for epoch in (1, 2):
        link.report(epoch, 0.5 + epoch / 10)
    assert study.trials[0].intermediate_values == {1: 0.6, 2: 0.7}


def test_finalists_are_the_best_distinct_trained_trials_and_their_runs_override_the_recipe():
    from optuna_sweeper.finalists import FinalistSettings, choose, job_overrides

    study = optuna.create_study(direction="maximize")
    for number, (value, overrides, extra) in enumerate(
        [
            (0.97, ["x=1", "trainer.epochs=5"], {}),
            (0.99, ["x=2", "trainer.epochs=5"], {}),
            (0.99, ["x=2", "trainer.epochs=5"], {}),  # the same recipe again (e.g. a warm-start copy)
            (0.0, ["x=3"], {Attr.REJECTED: True}),  # over budget: never trained
            (0.98, ["x=4", "trainer.epochs=5"], {}),
        ]
    ):
        study.add_trial(trial(TrialState.COMPLETE, value, **{Attr.OVERRIDES: overrides, **extra}))
        assert study.trials[-1].number == number
    assert [t.number for t in choose(study, 2)] == [1, 4]
    settings = FinalistSettings(2, [1, 2], "seed", ["trainer.epochs=15", "+extra=1"], ["test_acc"])
    assert job_overrides(study.trials[1], 2, settings) == ["x=2", "trainer.epochs=15", "+extra=1", "seed=2"]
    with pytest.raises(SweepError, match="repeats a seed"):
        FinalistSettings.from_config(OmegaConf.create({**settings.__dict__, "seeds": [1, 1]}))
    with pytest.raises(SweepError, match="top_k must be 0"):
        FinalistSettings.from_config(OmegaConf.create({**settings.__dict__, "top_k": -1}))
    with pytest.raises(SweepError, match="warm_start must be 0 or more"):
        FinalistSettings.from_config(OmegaConf.create({**settings.__dict__, "warm_start": -1}))


def test_the_best_trained_warm_start_trial_joins_the_finalists_when_the_top_k_leave_it_out():
    """finalists.warm_start=1: the hand-typed design stage 1 ranked below the top k is retrained beside them (its
    best trained copy; a pruned or rejected warm-start trial never is), and nothing is added when one of the top k
    is a warm-start recipe already, nor without a stage 2."""
    from optuna_sweeper.finalists import FinalistSettings, choose, who

    study = optuna.create_study(direction="maximize")
    for value, overrides, extra, state in [
        (0.96, ["x=0"], {Attr.WARM_START: 0}, TrialState.COMPLETE),  # a seed, trained to the end
        (None, ["x=1"], {Attr.WARM_START: 1}, TrialState.PRUNED),  # another seed, pruned
        (0.99, ["x=2"], {}, TrialState.COMPLETE),
        (0.98, ["x=3"], {}, TrialState.COMPLETE),
        (0.97, ["x=4"], {}, TrialState.COMPLETE),
        (0.0, ["x=5"], {Attr.WARM_START: 2, Attr.REJECTED: True}, TrialState.COMPLETE),  # a seed over budget
    ]:
        study.add_trial(trial(state, value, **{Attr.OVERRIDES: overrides, **extra}))
    assert [t.number for t in choose(study, 2)] == [2, 3]
    assert [t.number for t in choose(study, 2, warm_start=1)] == [2, 3, 0]
    assert [t.number for t in choose(study, 2, warm_start=3)] == [2, 3, 0]  # only trained ones: there is one
    assert [t.number for t in choose(study, 4, warm_start=1)] == [2, 3, 4, 0]  # among the top 4 already
    assert choose(study, 0, warm_start=1) == []
    # A found trial that drew a seed's recipe exactly stands for it: the seed is not retrained a second time.
    study.add_trial(trial(TrialState.COMPLETE, 0.995, **{Attr.OVERRIDES: ["x=0"]}))
    assert [t.number for t in choose(study, 2, warm_start=1)] == [6, 2]
    settings = FinalistSettings(2, [2, 3, 4], "seed", [], [], warm_start=1)
    assert who(settings) == "top 2 (+ the best warm-start trial if not among them)"


def test_a_budget_on_other_sizes_rejects_and_constrains_like_the_parameter_budget():
    from optuna_sweeper.budget import CONSTRAINT, ParamBudget, Size

    size = Size(5000, 6000, {"macs": (1_500_000, 1_000_000)})
    assert size.over and size.excess() == {"params": -1000, "macs": 500_000}
    assert size.reason() == "1,500,000 macs > budget 1,000,000"
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    budget = ParamBudget(lambda cfg: (5000, 6000, {"macs": (1_500_000, 1_000_000)}), rejected_value=0.0)
    assert budget.measure(trial, OmegaConf.create({})).over
    assert budget.rejected_values(["val_acc", "macs"], size) == [0.0, 1_500_000.0]
    study.tell(trial, 0.0)
    frozen = study.trials[0]
    assert frozen.constraints == {CONSTRAINT: -1000, "macs_over_budget": 500_000}
    assert frozen.user_attrs["macs"] == 1_500_000 and frozen.user_attrs[Attr.N_PARAMS] == 5000


def test_warm_start_entries_pass_through_the_adapter_before_they_are_queued():
    from optuna_sweeper.study import enqueue_warm_start

    space = SearchSpace(distributions=DIST, fixed={})
    study = optuna.create_study(direction="maximize")
    seen = []

    def halve_x(cfg, entry):  # e.g. fitting a seed to the sweep's budget
        seen.append((cfg, dict(entry)))
        return {**entry, "x": entry["x"] / 2}

    entries = OmegaConf.create([{"x": 0.8, "head": "gap"}, {"x": 0.4, "head": "linear"}])
    enqueue_warm_start(study, entries, space, app_config="the app config", adapter=halve_x)
    queued = [study.ask(fixed_distributions=DIST), study.ask(fixed_distributions=DIST)]
    assert [t.params for t in queued] == [{"x": 0.4, "head": "gap"}, {"x": 0.2, "head": "linear"}]
    assert [t.user_attrs[Attr.WARM_START] for t in queued] == [0, 1]
    assert seen == [("the app config", {"x": 0.8, "head": "gap"}), ("the app config", {"x": 0.4, "head": "linear"})]

    def broken(cfg, entry):
        raise KeyError("budget")

    with pytest.raises(SweepError, match=r"warm_start_adapter failed on warm-start entry 0 .*budget"):
        enqueue_warm_start(optuna.create_study(), entries, space, adapter=broken)


def test_an_entry_may_name_a_fixed_param_at_its_fixed_value_and_is_refused_another():
    """A search that pins part of a space (hparams_search/mnist_architecture fixes the recipe) inherits the warm
    start of the search it extends: keys fixed at the entry's own values are dropped, another value is refused."""
    from optuna_sweeper.study import enqueue_warm_start

    space = parse_search_space({"x": "interval(0, 1)", "optimizer.lr": 0.1, "augmentation": "rotate"}, [])
    study = optuna.create_study()
    enqueue_warm_start(study, [{"x": 0.5, "optimizer.lr": 0.1, "augmentation": "rotate"}], space)
    assert study.trials[0].system_attrs["fixed_params"] == {"x": 0.5}
    with pytest.raises(
        SweepError,
        match=r"warm_start\[0\] sets optimizer.lr=0.2, but hydra.sweeper.params fixes "
        r"optimizer.lr=0.1 for every trial",
    ):
        enqueue_warm_start(optuna.create_study(), [{"x": 0.5, "optimizer.lr": 0.2}], space)


def test_an_entry_the_adapter_brings_into_range_queues_without_out_of_range_warnings():
    """The dry run that names an entry's keys ran on the entry as written: a custom space's suggest_int on a seed
    width the adapter was about to fit printed Optuna's "out of range" warning (five per default sweep)."""
    import warnings

    from optuna_sweeper.study import enqueue_warm_start

    def widths(cfg, trial):
        return {"w": trial.suggest_int("w", 4, 8)}

    def fit(cfg, entry):
        return {**entry, "w": min(entry["w"], 8)}

    study = optuna.create_study()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enqueue_warm_start(study, [{"w": 16}], SearchSpace(), custom_space=widths, adapter=fit)
    assert not [w for w in caught if "out of range" in str(w.message)]
    trial = study.ask()
    assert widths(None, trial) == {"w": 8}


def test_seeded_worker_processes_draw_different_params():
    """Each worker process builds its own sampler; with one seed they drew the same params (a seeded random sweep
    with two workers trained every draw twice, and so did a job array's tasks, each a sweep command of its own).
    Worker k of command c draws from seed + k + 1000 c; the first command's own process keeps the seed."""
    cfg = OmegaConf.create({"_target_": "optuna.samplers.RandomSampler", "seed": 7})
    processes = [(c, k) for c in (0, 1) for k in (0, 1, 2)]
    streams = [resolve(settings(command_index=c, worker_id=k), "app", "/l", "m").seed_stream for c, k in processes]
    assert len(set(streams)) == len(processes)
    draws = []
    for stream in streams:
        study = optuna.create_study(sampler=make_sampler(cfg, SearchSpace(), stream))
        draws.append([study.ask().suggest_float("x", 0, 1) for _ in range(3)])
    assert len({tuple(d) for d in draws}) == len(processes)
    reference = optuna.create_study(sampler=optuna.samplers.RandomSampler(7))
    assert draws[0] == [reference.ask().suggest_float("x", 0, 1) for _ in range(3)]
    with pytest.raises(SweepError, match=r"hydra.sweeper.command_index must be 0 or more, got -1"):
        resolve(settings(command_index=-1), "app", "/l", "multirun")


def journal_study(tmp_path) -> optuna.Study:
    from optuna_sweeper.storage import open_storage

    return optuna.create_study(storage=open_storage(str(tmp_path / "optuna_journal.log")), study_name="s")


def test_a_new_trial_names_its_process_in_the_write_that_creates_it_and_a_queued_one_is_named_at_once(tmp_path):
    from optuna_sweeper.optuna_api import ask_named

    study = journal_study(tmp_path)
    owner = {Attr.SWEEP: "h:1", Attr.WORKER: "h:2"}
    new = ask_named(study, owner)
    assert 0 <= new.suggest_float("x", 0, 1) <= 1  # an ordinary trial: the sampler and the study work as with ask()
    writes = [json.loads(line) for line in (tmp_path / "optuna_journal.log").read_text().splitlines()]
    naming = [w for w in writes if "worker" in json.dumps(w.get("user_attrs", {}))]
    assert [w["op_code"] for w in naming] == [4]  # only the write that creates the trial (CREATE_TRIAL) names it
    study.tell(new, 0.5)
    study.enqueue_trial({"x": 0.25}, user_attrs={Attr.RETRY_OF: 0})
    queued = ask_named(study, owner)
    assert queued.suggest_float("x", 0, 1) == 0.25
    stored = study.trials[queued.number]
    assert stored.state == TrialState.RUNNING and stored.user_attrs == {Attr.RETRY_OF: 0, **owner}


def test_a_running_trial_that_names_no_process_is_queued_again_only_once_it_is_old(tmp_path):
    from datetime import datetime, timedelta

    from optuna_sweeper.optuna_api import create_running
    from optuna_sweeper.study import UNNAMED_AFTER_S, recover_dead_trials

    study = journal_study(tmp_path)
    for age in (UNNAMED_AFTER_S + 30, 1.0):  # taken by a process killed before naming itself; just taken by a live one
        create_running(study, {}, datetime.now() - timedelta(seconds=age))
    assert recover_dead_trials(study) == [0]
    old, young, retry = study.trials
    assert old.state == TrialState.FAIL and old.user_attrs[Attr.INTERRUPTED]
    assert young.state == TrialState.RUNNING  # not yet: its process may be about to name itself
    assert retry.state == TrialState.WAITING and retry.user_attrs[Attr.RETRY_OF] == 0

"""The Optuna sweeper on a toy app (tests/sweeper_app: real sweeper, storage, budget and epoch hooks, no training).
Each test runs `python app.py -m ...` in its own temp dir, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.optuna_sweeper import config as sweeper_config
from optuna_sweeper.outcomes import Attr, Outcome, outcome_of
from optuna_sweeper.space import grid_of, parse_search_space, sample_overrides

from .helpers import STUDY, by_state, launched, load, run_toy, start_toy, toy_command, trained_trials

# ------------------------------------------------------------------ search-space syntax (no subprocess)
SYNTAX = {
    "interval(0, 1)": optuna.distributions.FloatDistribution(0.0, 1.0),
    "int(interval(1, 10))": optuna.distributions.IntDistribution(1, 10),
    "tag(log, interval(1e-5, 1e-1))": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True),
    "range(1, 10, 2)": optuna.distributions.IntDistribution(1, 9, step=2),  # stop excluded, as in Python
    "range(0.1, 0.5, 0.1)": optuna.distributions.FloatDistribution(0.1, 0.4, step=0.1),
    "choice(pool, conv1x1_pool)": optuna.distributions.CategoricalDistribution(("pool", "conv1x1_pool")),
    "choice(4, 8)": optuna.distributions.CategoricalDistribution((4, 8)),
    "x,y": optuna.distributions.CategoricalDistribution(("x", "y")),
    "choice(true, false)": optuna.distributions.CategoricalDistribution((True, False)),
    "shuffle(range(1, 4))": optuna.distributions.CategoricalDistribution((1, 2, 3)),
}


@pytest.mark.parametrize(("text", "distribution"), SYNTAX.items(), ids=list(SYNTAX))
def test_search_space_syntax_maps_to_an_optuna_distribution(text, distribution):
    parsed = parse_search_space({"knob": text}, []).distributions["knob"]
    if "shuffle" in text:  # a shuffled range is a categorical of its values, in any order
        assert sorted(parsed.choices) == sorted(distribution.choices)
    else:
        assert parsed == distribution


def test_plain_values_are_fixed_and_the_command_line_wins():
    space = parse_search_space({"a": "interval(0, 1)", "f": 8000, "model": "family"}, ["a=interval(0, 2)", "h=x,y"])
    assert space.distributions["a"] == optuna.distributions.FloatDistribution(0.0, 2.0)
    assert space.fixed == {"f": "8000", "model": "family"}
    overrides = sample_overrides(optuna.create_study().ask(), space)
    assert overrides[:2] == ["f=8000", "model=family"] and len(overrides) == 2 + len(space.distributions)


def test_grid_lists_every_choice_and_step():
    grid = grid_of(parse_search_space({"g": "choice(4, 8)", "d": "range(1, 5)"}, []))
    assert grid == {"g": [4, 8], "d": [1, 2, 3, 4]}


BAD_SPECS = ["interval(0,", "interval(1, 0)", "choice()", "range(5, 1)", "tag(log, interval(0, 1))"]


@pytest.mark.parametrize("bad", BAD_SPECS)
def test_malformed_search_space_is_a_clear_error(bad):
    # Matched by name: Hydra re-executes plugin modules when it scans them, so after any in-process Hydra start
    # (another test's compose) the class raised is a fresh SweepError, not the one this module imported.
    with pytest.raises(Exception, match="hydra.sweeper.params") as info:
        parse_search_space({"x": bad}, [])
    assert type(info.value).__name__ == "SweepError"


def test_every_sampler_and_pruner_config_instantiates():
    grid = {"x": [1, 2]}
    for name, conf in {**sweeper_config.SAMPLERS, **sweeper_config.PRUNERS}.items():
        extra = {"search_space": grid} if name == "grid" else {}
        assert instantiate(OmegaConf.structured(conf), **extra) is not None, name


# ------------------------------------------------------------------ toy sweeps
@pytest.mark.slow
def test_budget_rejection_pruning_warm_start_and_hook(tmp_path):
    result = run_toy(
        "hydra.sweeper.n_trials=8",
        "hydra.sweeper.n_workers=1",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.warm_start=[{x: 0.3, width: 4}, {x: 0.9, width: 32}]",
        "hydra.sweeper.custom_search_space=hooks.epochs_for_small_models",
        cwd=tmp_path,
    )
    assert result.returncode == 0
    study, jobs = load(tmp_path), launched(tmp_path)
    states = by_state(study)
    # Warm start: the seeds are the first trials; the over-budget one is rejected like any other.
    seeds = [{k: t.params[k] for k in ("x", "width")} for t in study.trials[:2]]
    assert seeds == [{"x": 0.3, "width": 4}, {"x": 0.9, "width": 32}]
    rejected = states["REJECTED"]
    assert rejected and all(t.params["width"] == 32 and t.constraints["params_over_budget"] > 0 for t in rejected)
    assert not {t.number for t in rejected} & set(jobs), "a rejected trial must never reach a job"
    assert all(t.constraints["params_over_budget"] <= 0 for t in states["COMPLETE"])
    assert states.get("PRUNED"), "the median pruner should stop at least one poor trial"
    assert all(t.user_attrs[Attr.EPOCHS_RUN] < 4 for t in states["PRUNED"])
    assert len(states["COMPLETE"]) + len(states["PRUNED"]) == 8  # rejected trials don't count towards n_trials
    # The hook's conditional param exists exactly for width 4.
    assert all(("epochs" in t.params) == (t.params["width"] == 4) for t in study.trials if "width" in t.params)
    summary = result.stdout
    assert f"{len(rejected)} rejected over budget" in summary and "leaderboard" not in result.stderr
    assert (next((tmp_path / "multirun").glob("*/*/leaderboard.csv"))).exists()
    # The exporter writes the best trial's whole recipe (its sampled params) as an experiment preset.
    found = yaml.safe_load((tmp_path / "found" / "experiment" / "found" / f"{STUDY}.yaml").read_text())
    best = max(states["COMPLETE"], key=lambda t: t.value)
    assert found["model"]["name"] == f"found_{STUDY}" and f"trial {best.number}" in found["model"]["source"]
    assert {"x": found["x"], "width": found["width"]} == {"x": best.params["x"], "width": best.params["width"]}


@pytest.mark.slow
def test_resume_continues_numbering_and_redoes_an_interrupted_trial(tmp_path):
    toy = ["hydra.sweeper.n_trials=4", "hydra.sweeper.n_workers=1", "epochs=2", "epoch_seconds=1.0", "width=4"]
    slow = start_toy(*toy, cwd=tmp_path)
    deadline = time.time() + 60
    while not (tmp_path / "jobs" / "1.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    slow.send_signal(signal.SIGINT)  # Ctrl-C while trial 1 trains
    assert slow.wait(timeout=60) != 0
    before = load(tmp_path)
    interrupted = [t for t in before.trials if outcome_of(t) == Outcome.INTERRUPTED]
    assert [t.number for t in interrupted] == [1] and interrupted[0].state == TrialState.FAIL
    done_before = {t.number: t.params for t in before.trials if t.state == TrialState.COMPLETE}

    assert run_toy("hydra.sweeper.n_trials=4", "hydra.sweeper.n_workers=1", "width=4", cwd=tmp_path).returncode == 0
    after = load(tmp_path)
    numbers = [t.number for t in after.trials]
    assert numbers == list(range(len(numbers)))  # numbering continues, nothing overwritten
    assert {t.number: t.params for t in after.trials if t.number in done_before} == done_before
    retried = [t for t in after.trials if t.user_attrs.get(Attr.RETRY_OF) == 1]
    assert len(retried) == 1 and retried[0].params == interrupted[0].params and retried[0].state.is_finished()
    finished = [t for t in after.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4
    assert all(launched(tmp_path)[t.number] for t in finished)


@pytest.mark.slow
def test_nan_fails_the_trial_and_the_sweep_goes_on_until_max_failure_rate(tmp_path):
    args = [
        "x=choice(0.2, 0.9)",
        "diverge_above=0.5",
        "width=4",
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.n_workers=1",
    ]
    result = run_toy("hydra.sweeper.n_trials=6", "hydra.sweeper.max_failure_rate=1.0", *args, cwd=tmp_path)
    assert result.returncode == 0
    states = by_state(load(tmp_path))
    assert states["FAIL"] and states["COMPLETE"] and len(states["FAIL"]) + len(states["COMPLETE"]) == 6
    assert all("diverged" in t.user_attrs[Attr.ERROR] for t in states["FAIL"])

    stopped = run_toy("hydra.sweeper.n_trials=40", "hydra.sweeper.max_failure_rate=0.05", *args, cwd=tmp_path)
    assert stopped.returncode == 2 and "max_failure_rate=0.05" in stopped.stderr
    assert len(load(tmp_path).trials) > 6  # nothing recorded before was lost


@pytest.mark.slow
def test_multi_objective_writes_the_pareto_front(tmp_path):
    result = run_toy(
        "hydra.sweeper.direction=[maximize,minimize]",
        "hydra.sweeper.n_trials=6",
        "hydra/sweeper/sampler=nsgaii",
        cwd=tmp_path,
    )
    assert result.returncode == 0 and "Pareto front:" in result.stdout
    study = load(tmp_path, "app-max_val_acc-min_n_params")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    sweep_dir = next((tmp_path / "multirun").glob("*/*/pareto_front.yaml")).parent
    front = yaml.safe_load((sweep_dir / "pareto_front.yaml").read_text())
    assert front["objectives"] == ["val_acc", "n_params"] and front["front"]
    assert (sweep_dir / "pareto_front.png").stat().st_size > 1000
    rejected_numbers = {t.number for t in study.trials if outcome_of(t) == Outcome.REJECTED}
    assert not rejected_numbers & {entry["trial"] for entry in front["front"]}


@pytest.mark.slow
def test_two_processes_started_by_hand_share_one_study(tmp_path):
    # n_workers=1: each command is one process, as when workers are started by hand (on several machines) or as the
    # tasks of a SLURM job array: at the same instant, on a study and an MLflow store that do not exist yet.
    tracking = "tracking={experiment: byhand, tracking_uri: null, run_name: null, parent_run_id: null, tags: {}}"
    args = toy_command(
        "hydra.sweeper.n_trials=8", "hydra.sweeper.n_workers=1", "epoch_seconds=0.2", "width=choice(4, 8)", tracking
    )
    workers = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in "ab"]
    codes = [w.wait(timeout=120) for w in workers]
    assert codes == [0, 0], [w.stderr.read()[-2000:] for w in workers]
    study, jobs = load(tmp_path), launched(tmp_path)
    trained = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(trained) == 8  # exactly: a trial asked for past n_trials is given up (SURPLUS)
    assert sorted(jobs) == sorted(t.number for t in trained)  # each trial trained exactly once
    assert len({job["pid"] for job in jobs.values()}) == 2  # and both workers did some
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")  # one store, created once: a run per trial
    runs = client.search_runs([client.get_experiment_by_name("byhand").experiment_id])
    trial_runs = sorted(int(r.data.tags["optuna_trial"]) for r in runs if "optuna_trial" in r.data.tags)
    assert trial_runs == sorted(t.number for t in study.trials)


# ------------------------------------------------------------------ hydra.sweeper.n_workers: worker processes
def gone(pid: int) -> bool:
    """Exited (a zombie waiting for its new parent to reap it counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def training_pids(cwd: Path) -> set[int]:
    try:
        return {job["pid"] for job in launched(cwd).values()}
    except ValueError:  # a job file being written
        return set()


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_n_workers_2_starts_a_worker_that_shares_the_study_and_the_sweep_dir(tmp_path):
    result = run_toy(
        "hydra.sweeper.n_workers=2", "hydra.sweeper.n_trials=8", "epoch_seconds=0.3", "width=choice(4, 8)", cwd=tmp_path
    )
    assert result.returncode == 0
    study, jobs = load(tmp_path), launched(tmp_path)
    trained = trained_trials(study)
    assert len(trained) == 8  # exactly: a trial asked for past n_trials is given up (SURPLUS)
    assert sorted(jobs) == sorted(t.number for t in trained)  # each trial trained exactly once
    assert len({t.user_attrs[Attr.WORKER] for t in trained}) == 2  # by two processes
    assert len({job["pid"] for job in jobs.values()}) == 2
    [sweep_dir] = (tmp_path / "multirun").glob("*/*")  # the worker's trials went to the same sweep dir
    assert sorted(int(p.name.removeprefix("trial_")) for p in sweep_dir.glob("trial_*")) == sorted(jobs)
    worker_log = sweep_dir / "worker-1.log"
    assert str(worker_log) in result.stdout and "worker 1: Optuna study" in worker_log.read_text()
    # The summary waited for the worker: it counts every trial of both processes.
    pruned = sum(t.state == TrialState.PRUNED for t in trained)
    assert f"this run {len(trained) - pruned} complete, {pruned} pruned" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("to", ["terminal", "command alone"])
def test_ctrl_c_stops_every_worker_and_requeues_their_trials(to, tmp_path):
    toy = ["hydra.sweeper.n_workers=2", "hydra.sweeper.n_trials=6", "epochs=2", "epoch_seconds=5.0", "width=4"]
    sweep = start_toy(
        *toy, cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: len(training_pids(tmp_path)) == 2)  # both processes are training
    if to == "terminal":
        os.killpg(sweep.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
    else:
        sweep.send_signal(signal.SIGINT)  # `kill -INT`: the command tells its worker to stop
    output, errors = sweep.communicate(timeout=90)
    assert sweep.returncode == 130 and "this run" in output  # the summary still comes
    assert "Interrupted. Re-run the same command" in output and "Traceback" not in output + errors
    study = load(tmp_path)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in study.trials if outcome_of(t) == Outcome.INTERRUPTED]
    assert len({t.user_attrs[Attr.WORKER] for t in interrupted}) == 2  # each process marked its own trial
    assert len([t for t in study.trials if t.state == TrialState.WAITING and Attr.RETRY_OF in t.user_attrs]) == 2
    worker_pids = {int(t.user_attrs[Attr.WORKER].rsplit(":", 1)[1]) for t in interrupted} - {sweep.pid}
    assert worker_pids and all(gone(pid) for pid in worker_pids)


@pytest.mark.slow
def test_sigterm_of_the_sweep_terminates_its_workers(tmp_path):
    toy = ["hydra.sweeper.n_workers=2", "hydra.sweeper.n_trials=6", "epoch_seconds=5.0", "width=4"]
    sweep = start_toy(*toy, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL)
    wait_for(lambda: len(training_pids(tmp_path)) == 2)
    [worker_pid] = training_pids(tmp_path) - {sweep.pid}
    sweep.terminate()  # to the sweep process only
    assert sweep.wait(timeout=30) == -signal.SIGTERM
    wait_for(lambda: gone(worker_pid), timeout=15)


@pytest.mark.slow
def test_a_failed_worker_is_reported_and_fails_the_command(tmp_path):
    result = run_toy(
        "hydra.sweeper.n_workers=2",
        "hydra.sweeper.n_trials=6",
        "epoch_seconds=0.5",
        "width=4",
        "hydra.sweeper.custom_search_space=hooks.fail_in_workers",
        cwd=tmp_path,
    )
    worker_log = next((tmp_path / "multirun").glob("*/*/worker-1.log"))
    assert "broken on purpose" in worker_log.read_text()
    assert result.returncode == 2 and "this run" in result.stdout  # the summary first, then the error
    assert f"worker 1 exited with status 1 (its log: {worker_log})" in result.stderr
    assert f"Worker 1 exited with status 1: see {worker_log}" in result.stdout
    study = load(tmp_path)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all("broken on purpose" in t.user_attrs[Attr.ERROR] for t in failed)
    assert len(trained_trials(study)) + len(failed) == 6  # the sweep itself went on to n_trials


@pytest.mark.slow
def test_bad_inputs_exit_nonzero_with_a_clear_message_and_lose_nothing(tmp_path):
    first = run_toy("hydra.sweeper.n_trials=2", "hydra.sweeper.n_workers=1", "width=4", "epochs=2", cwd=tmp_path)
    assert first.returncode == 0
    cases = {
        "hydra.sweeper.n_workers=0": "hydra.sweeper.n_workers must be 1 or more",
        "hydra.sweeper.storage=sqlite:///:memory:": "in-memory database",
        "hydra/sweeper/sampler=annealing": "Could not find 'hydra/sweeper/sampler/annealing'",
        "hydra.sweeper.params.x='interval(0,'": "cannot parse",
        "hydra.sweeper.storage=nosuchdb://x/y": "Cannot open the Optuna storage",
        "+hydra.sweeper.params.nosuchkey='choice(1,2)'": "could not compose",
    }
    for override, message in cases.items():
        result = run_toy("hydra.sweeper.n_trials=4", override, cwd=tmp_path)
        assert result.returncode != 0 and message in result.stderr, override
    assert len(load(tmp_path).trials) == 2


@pytest.mark.slow
@pytest.mark.parametrize("installed", ["hydra-optuna-sweeper", "optuna 2"])
def test_a_competing_plugin_or_an_old_optuna_is_named_before_anything_runs(tmp_path, installed):
    site = tmp_path / "site"
    if installed == "hydra-optuna-sweeper":  # what that package installs: a second plugin in hydra_plugins
        (site / "hydra_plugins" / "hydra_optuna_sweeper").mkdir(parents=True)
        (site / "hydra_plugins" / "hydra_optuna_sweeper" / "__init__.py").write_text("")
        expected = "pip uninstall -y hydra-optuna-sweeper"
    else:  # the metadata of an older Optuna found first on the path
        (site / "optuna-2.10.1.dist-info").mkdir(parents=True)
        (site / "optuna-2.10.1.dist-info" / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: optuna\nVersion: 2.10.1\n"
        )
        expected = "needs Optuna 5, but optuna 2.10.1 is installed"
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        toy_command("hydra.sweeper.n_trials=2"), cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "optuna_journal.log").exists() and not (tmp_path / "jobs").exists()


@pytest.mark.slow
def test_kill_9_of_a_worker_is_noticed_by_the_live_sweep_which_redoes_its_trial(tmp_path):
    toy = ["hydra.sweeper.n_workers=2", "hydra.sweeper.n_trials=4", "epochs=2", "epoch_seconds=2.0", "width=4"]
    sweep = start_toy(*toy, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(training_pids(tmp_path)) == 2)
    [worker_pid] = training_pids(tmp_path) - {sweep.pid}
    os.kill(worker_pid, signal.SIGKILL)  # mid-trial: its trial is left RUNNING
    assert sweep.wait(timeout=120) == 2  # the dead worker is reported as failed...
    study = load(tmp_path)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]  # ...but no trial was left behind
    lost = [t for t in study.trials if outcome_of(t) == Outcome.INTERRUPTED]
    assert len(lost) == 1 and lost[0].user_attrs[Attr.WORKER].endswith(f":{worker_pid}")
    redone = [t for t in study.trials if t.user_attrs.get(Attr.RETRY_OF) == lost[0].number]
    assert len(redone) == 1 and redone[0].state.is_finished()  # redone by the live command itself
    assert len(trained_trials(study)) == 4


@pytest.mark.slow
def test_kill_9_of_the_sweep_command_stops_its_workers_who_requeue_their_trial(tmp_path):
    toy = ["hydra.sweeper.n_workers=2", "hydra.sweeper.n_trials=6", "epochs=2", "epoch_seconds=5.0", "width=4"]
    # Started as `nohup ... &` from a script starts it, with SIGINT ignored (inherited by its worker): the worker
    # must stop all the same.
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    sweep = start_toy(*toy, cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN), **quiet)
    wait_for(lambda: len(training_pids(tmp_path)) == 2)
    [worker_pid] = training_pids(tmp_path) - {sweep.pid}
    sweep.kill()
    sweep.wait(timeout=10)
    wait_for(lambda: gone(worker_pid), timeout=30)
    study = load(tmp_path)
    [requeued] = [t for t in study.trials if outcome_of(t) == Outcome.INTERRUPTED]
    assert requeued.user_attrs[Attr.WORKER].endswith(f":{worker_pid}")
    # The command's own trial was killed with it; the next run on this host recovers it.
    assert run_toy(*toy[1:], "hydra.sweeper.n_workers=1", "epoch_seconds=0", cwd=tmp_path).returncode == 0
    after = load(tmp_path)
    assert not [t for t in after.trials if t.state == TrialState.RUNNING] and len(trained_trials(after)) == 6


def queue_twice(stage1, stage2, settings) -> None:
    """What two commands' queue_runs do when each looks before the other has queued: every run twice."""
    from optuna_sweeper.finalists import queue_runs

    queue_runs(stage1, stage2, settings, "host-a")
    for queued in stage2.get_trials(deepcopy=False):  # host B's, from its own (empty) look at the study
        stage2.enqueue_trial({}, user_attrs=dict(queued.user_attrs))


def test_a_stage_two_run_queued_by_two_commands_runs_once():
    """Two hosts' sweep commands each queue stage 2 (queue_runs) before either sees the other's runs: each
    (finalist, seed) is then queued twice, and the later copy gives way, unless the earlier one was interrupted."""
    from optuna_sweeper.finalists import FinalistSettings, queued_twice

    stage1 = optuna.create_study(direction="maximize")
    stage1.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    stage2 = optuna.create_study(direction="maximize")
    settings = FinalistSettings(top_k=1, seeds=[1, 2], seed_key="seed", overrides=[], report=[])
    queue_twice(stage1, stage2, settings)
    assert len(stage2.get_trials(deepcopy=False)) == 4
    seeds_run, given_way = [], []
    for _ in range(4):
        trial = stage2.ask()
        seed = trial.user_attrs[Attr.SEED]
        if queued_twice(stage2, trial):
            given_way.append(seed)
            trial.set_user_attr(Attr.SURPLUS, True)
            stage2.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            seeds_run.append(seed)
            stage2.tell(trial, 0.9)
    assert sorted(seeds_run) == [1, 2] and sorted(given_way) == [1, 2]

    # An interrupted run's later copy is its retry, not a duplicate.
    stage2 = optuna.create_study(direction="maximize")
    queue_twice(stage1, stage2, settings)
    first = stage2.ask()
    first.set_user_attr(Attr.INTERRUPTED, True)
    stage2.tell(first, state=optuna.trial.TrialState.FAIL)
    assert outcome_of(stage2.trials[first.number]) == Outcome.INTERRUPTED
    copies = [stage2.ask() for _ in range(3)]
    twin = next(t for t in copies if t.user_attrs[Attr.SEED] == first.user_attrs[Attr.SEED])
    assert not queued_twice(stage2, twin)

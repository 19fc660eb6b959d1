"""The Optuna sweeper: ask Optuna for a trial, compose its config and count its model (an over-budget trial is
told as infeasible and never launched), launch the rest through Hydra's launcher, and tell Optuna what happened."""


import logging
import math
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.types import Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from hydra_plugins.mnist_sweep_optuna import report
from hydra_plugins.mnist_sweep_optuna.config import register
from hydra_plugins.mnist_sweep_optuna.errors import SweepError
from hydra_plugins.mnist_sweep_optuna.search_space import (
    SearchSpace,
    describe,
    encode_param,
    grid_of,
    override_value,
    parse_search_space,
    sample_overrides,
)
from hydra_plugins.mnist_sweep_optuna.storage import in_memory, open_storage, redact, resolve_storage
from hydra_plugins.mnist_sweep_optuna.workers import INTERRUPT_GRACE_S, WorkerPool, ignore_further_interrupts

log = logging.getLogger(__name__)
register()

WORKER = f"{socket.gethostname()}:{os.getpid()}"
MAX_REJECTIONS_IN_A_ROW = 200  # a search space almost entirely over budget should stop, not spin


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = OmegaConf.create(settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.task_name = app_name(task_function, config)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[Any]:
        try:
            return StudySweep(self, arguments).run()
        except SweepError as exc:
            print(f"optuna sweeper: error: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)


@dataclass
class Plan:
    trial: optuna.Trial
    overrides: list[str] = field(default_factory=list)


@dataclass
class Tally:
    complete: int = 0
    pruned: int = 0
    rejected: int = 0
    failed: int = 0
    rejected_in_a_row: int = 0
    last_error: str = ""

    def plus(self, other: "Tally") -> "Tally":
        return Tally(self.complete + other.complete, self.pruned + other.pruned, self.rejected + other.rejected,
                     self.failed + other.failed)  # fmt: skip


class StudySweep:
    """One `-m hydra/sweeper=optuna` command: set up the study, run trials until it holds n_trials, report."""

    def __init__(self, sweeper: OptunaSweeper, arguments: list[str]) -> None:
        self.s, self.config, self.launcher = sweeper.settings, sweeper.config, sweeper.launcher
        self.config_loader = sweeper.hydra_context.config_loader
        self.space: SearchSpace = parse_search_space(as_dict(self.s.params), arguments)
        self.directions = directions_of(self.s.direction)
        self.objectives = objectives_of(list(self.s.objectives), self.directions)
        self.study_name = self.s.study_name or default_study_name(sweeper.task_name, self.directions, self.objectives)
        self.storage_url = resolve_storage(self.s.storage, self.config.hydra.runtime.cwd)
        # Absolute: the workers get it as their sweep dir, and the log paths printed name it.
        self.sweep_dir = Path(self.config.hydra.runtime.cwd) / str(self.config.hydra.sweep.dir)
        self.tally, self.in_flight, self.returns = Tally(), [], []
        # Only numbers Hydra's jobs (hydra.job.num); their dirs are trial_<number>, unique across all workers.
        self.job_idx = 0
        self.runs = None  # mlflow_runs.SweepRuns when MLflow is on
        self.workers = WorkerPool()  # the processes this command started (none in a worker)
        self.is_worker = self.s.worker_id > 0

    # ---------------------------------------------------------------- setup
    def run(self) -> list[Any]:
        self.check_n_workers()
        self.probe_config()  # a typo in a key fails here, before anything is recorded
        self.study = self.open_study()
        # Loaded after the cheap checks: the app's param counter may import a deep-learning framework.
        self.hook = load_callable(self.s.custom_search_space, "custom_search_space")
        self.counter = load_callable(self.s.param_counter, "param_counter")
        self.pruner_cfg = self.pruner_config()
        recover_dead_trials(self.study)
        if not self.is_worker:  # queued before the workers start, so no two processes race to queue the seeds
            self.enqueue_warm_start()
        self.runs = self.start_mlflow()
        log.info("Optuna study %r in %s: %d trials to reach n_trials=%d", self.study_name, redact(self.storage_url),
                 max(0, self.s.n_trials - counted(self.study)), self.s.n_trials)  # fmt: skip
        status = "FAILED"
        try:
            self.start_workers()
            self.loop()
            status = "FINISHED"
            self.workers.wait()  # the summary and the exported best model cover their trials too
        except KeyboardInterrupt:
            status = "KILLED"
            if self.is_worker:
                ignore_further_interrupts()
            self.interrupt()
            raise
        except BaseException as exc:
            for plan in list(self.in_flight):  # never leave a trial RUNNING behind
                self.fail(plan, f"the sweep stopped: {type(exc).__name__}: {report_line(exc)}")
            raise
        finally:
            self.workers.stop(grace_s=INTERRUPT_GRACE_S if status == "KILLED" else 0.0)
            self.finish(status)
        self.check_workers_succeeded()
        return self.returns

    def check_n_workers(self) -> None:
        if self.s.n_workers < 1:
            raise SweepError(
                f"hydra.sweeper.n_workers must be 1 or more, got {self.s.n_workers}: it is the number of processes "
                "working on the study (this command plus n_workers-1 copies it starts); 1 runs this process only."
            )
        if self.s.n_workers > 1 and in_memory(self.storage_url):
            raise SweepError(
                f"hydra.sweeper.storage={redact(self.storage_url)} is an in-memory database, which the extra worker "
                f"processes of hydra.sweeper.n_workers={self.s.n_workers} cannot share. Set hydra.sweeper.n_workers=1, "
                "or use a journal file (the default), sqlite:///file.db or a PostgreSQL URL."
            )

    def probe_config(self) -> None:
        probe = [f"{k}={override_value(first_value(d))}" for k, d in self.space.distributions.items()]
        self.compose(list(self.space_fixed_overrides()) + probe, what="the search space")

    def space_fixed_overrides(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.space.fixed.items()]

    def compose(self, overrides: list[str], what: str) -> DictConfig:
        try:
            return self.config_loader.load_sweep_config(self.config, overrides)
        except HydraException as exc:
            raise SweepError(
                f"Hydra could not compose the config for {what} ({' '.join(overrides)}): {report_line(exc)} Check "
                "the keys and values in hydra.sweeper.params and on the command line."
            ) from None

    def open_study(self) -> optuna.Study:
        storage = open_storage(self.storage_url)
        sampler = self.make_sampler()
        study = optuna.create_study(storage=storage, study_name=self.study_name, sampler=sampler,
                                    directions=self.directions, load_if_exists=True)  # fmt: skip
        stored = [d.name.lower() for d in study.directions]
        if stored != self.directions:
            raise SweepError(
                f"Study {self.study_name!r} in {redact(self.storage_url)} optimises {stored}, but this sweep asks for "
                f"{self.directions}. Choose another hydra.sweeper.study_name for a different objective."
            )
        return study

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        extra = {"search_space": grid_of(self.space)} if self.s.sampler._target_.endswith("GridSampler") else {}
        try:
            return instantiate(self.s.sampler, **extra)
        except Exception as exc:
            raise SweepError(f"Cannot create the sampler {self.s.sampler._target_}: {report_line(exc)}") from None

    def pruner_config(self) -> dict | None:
        """The pruner travels to each job as config (jobs may run in other processes); none when it can't act."""
        pruner_cfg = OmegaConf.to_container(self.s.pruner)
        if len(self.directions) > 1 or pruner_cfg["_target_"].endswith("NopPruner"):
            return None
        try:
            instantiate(pruner_cfg)
        except Exception as exc:
            raise SweepError(f"Cannot create the pruner {pruner_cfg['_target_']}: {report_line(exc)}") from None
        return pruner_cfg

    def enqueue_warm_start(self) -> None:
        for index, entry in enumerate(self.s.warm_start or []):
            params = OmegaConf.to_container(entry)
            unknown = sorted(set(params) - set(self.space.distributions))
            if unknown:
                raise SweepError(
                    f"hydra.sweeper.warm_start[{index}] sets {unknown}, which are not searched params. Warm-start "
                    f"entries may only name keys of hydra.sweeper.params that are sweeps: "
                    f"{sorted(self.space.distributions)}."
                )
            encoded = {k: encode_param(self.space.distributions[k], v) for k, v in params.items()}
            # skip_if_exists: a re-run of the same command does not queue the seeds again.
            self.study.enqueue_trial(encoded, user_attrs={"warm_start": index}, skip_if_exists=True)

    def start_mlflow(self):
        tracking = self.config.get("tracking")
        if not self.s.mlflow or tracking is None:
            return None
        # Imported only when used: Hydra imports every plugin module at start-up, and MLflow takes seconds.
        from hydra_plugins.mnist_sweep_optuna.mlflow_runs import SweepRuns

        summary = {"study": self.study_name, "storage": redact(self.storage_url), "sampler": self.s.sampler._target_,
                   "pruner": (self.pruner_cfg or {}).get("_target_", "none"), "n_trials": self.s.n_trials,
                   "n_workers": self.s.n_workers,
                   "directions": ",".join(self.directions), "objectives": ",".join(self.objectives)}  # fmt: skip
        summary.update({f"space.{k}": describe(d) for k, d in self.space.distributions.items()})
        summary.update({f"fixed.{k}": v for k, v in self.space.fixed.items()})
        # A worker's trial runs nest under the sweep run of the command that started it.
        return SweepRuns(tracking, self.study_name, summary, parent_id=self.s.parent_run_id)

    def start_workers(self) -> None:
        if self.s.n_workers > 1:
            self.workers.start(self.s.n_workers - 1, self.sweep_dir, self.worker_overrides)

    def worker_overrides(self, number: int) -> list[str]:
        # The sweep dir as resolved here: in the worker, ${now:...} would give the worker's own start time.
        overrides = ["hydra.sweeper.n_workers=1", f"hydra.sweeper.worker_id={number}",
                     f"hydra.sweep.dir={Transformer.str(str(self.sweep_dir))}"]  # fmt: skip
        if self.runs:
            overrides.append(f"hydra.sweeper.parent_run_id='{self.runs.parent_id}'")
        return overrides

    # ---------------------------------------------------------------- trials
    def loop(self) -> None:
        while (remaining := self.s.n_trials - counted(self.study)) > 0:
            if self.s.sampler._target_.endswith("GridSampler") and grid_exhausted(self.study):
                log.info("The grid is exhausted: every combination has been tried.")
                return
            plans = [plan for _ in range(min(self.s.n_jobs, remaining)) if (plan := self.plan_trial())]
            if plans:
                self.launch(plans)
            self.check_failures()

    def plan_trial(self) -> Plan | None:
        """Ask, sample, compose and count. Returns None when the trial was settled without launching a job."""
        trial = self.study.ask()
        plan = Plan(trial)
        self.in_flight.append(plan)
        trial.set_user_attr("worker", WORKER)
        plan.overrides = sample_overrides(trial, self.space) + self.hook_overrides(trial)
        trial.set_user_attr("overrides", plan.overrides)
        if self.counter is None:
            return plan
        try:
            n_params, max_params = self.counter(self.compose(plan.overrides, what=f"trial {trial.number}"))
        except Exception as exc:  # a knob combination the model code refuses: this trial fails, the sweep goes on
            self.fail(plan, f"its model could not be built: {report_line(exc)}")
            return None
        trial.set_user_attr("n_params", n_params)
        if max_params is None:
            return plan
        trial.set_constraint("params_over_budget", n_params - max_params)
        if n_params <= max_params:
            self.tally.rejected_in_a_row = 0
            return plan
        self.reject(plan, n_params, max_params)
        return None

    def hook_overrides(self, trial: optuna.Trial) -> list[str]:
        if self.hook is None:
            return []
        declared = set(trial.params)
        extra = self.hook(self.config, trial) or {}
        suggested = {k: v for k, v in trial.params.items() if k not in declared}
        return [f"{k}={Transformer.str(v)}" for k, v in {**suggested, **extra}.items()]

    def reject(self, plan: Plan, n_params: int, max_params: int) -> None:
        trial = plan.trial
        trial.set_user_attr("rejected", True)
        values = [float(n_params) if name == "n_params" else self.s.rejected_value for name in self.objectives]
        self.study.tell(trial, values)
        self.in_flight.remove(plan)
        self.tally.rejected += 1
        self.tally.rejected_in_a_row += 1
        log.info("trial %d rejected without training: %s parameters > budget %s",
                 trial.number, f"{n_params:,}", f"{max_params:,}")  # fmt: skip
        if self.runs:
            self.runs.log_rejected(trial.number, plan.overrides, n_params, max_params)
        if self.tally.rejected_in_a_row >= MAX_REJECTIONS_IN_A_ROW:
            raise SweepError(
                f"{MAX_REJECTIONS_IN_A_ROW} trials in a row were over the parameter budget. Narrow the search space "
                "in hydra.sweeper.params (fewer channels or blocks) or raise budget.max_params."
            )

    def launch(self, plans: list[Plan]) -> None:
        batch = [plan.overrides + self.bookkeeping(plan.trial) for plan in plans]
        returns = self.launcher.launch(batch, initial_job_idx=self.job_idx)
        self.job_idx += len(batch)
        for plan, job_return in zip(plans, returns, strict=False):
            self.settle(plan, job_return)

    def bookkeeping(self, trial: optuna.Trial) -> list[str]:
        link = {"storage": self.storage_url, "study_name": self.study_name, "trial_id": trial._trial_id,
                "trial_number": trial.number, "pruner": self.pruner_cfg}  # fmt: skip
        overrides = [f"++optuna={Transformer.str(link)}", f"hydra.sweep.subdir=trial_{trial.number}"]
        return overrides + (self.runs.job_overrides(trial.number) if self.runs else [])

    def settle(self, plan: Plan, job_return: JobReturn) -> None:
        outcome = job_return._return_value  # the exception when the job failed
        if job_return.status == JobStatus.COMPLETED:
            values, problem = self.objective_values(outcome)
            if problem:
                return self.fail(plan, problem)
            self.study.tell(plan.trial, values)
            self.tally.complete += 1
            self.mark(plan, "COMPLETE")
        elif isinstance(outcome, optuna.TrialPruned):
            self.study.tell(plan.trial, state=TrialState.PRUNED)
            self.tally.pruned += 1
            log.info("trial %d pruned: %s", plan.trial.number, outcome)
            self.mark(plan, "PRUNED")
        else:
            self.fail(plan, f"{type(outcome).__name__}: {outcome}")
        self.returns.append(job_return)

    def objective_values(self, outcome: Any) -> tuple[list[float], str]:
        try:
            if isinstance(outcome, dict | DictConfig):
                values = [float(outcome[name]) for name in self.objectives]
            else:
                values = [float(outcome)]
        except (KeyError, TypeError, ValueError) as exc:
            return [], f"the job returned {outcome!r}, which has no {self.objectives} ({exc})"
        if len(values) != len(self.directions):
            return [], f"the job returned {len(values)} objective(s) for {len(self.directions)} direction(s)"
        if not all(math.isfinite(v) for v in values):
            return [], f"the job returned non-finite objectives {values}"
        return values, ""

    def fail(self, plan: Plan, message: str) -> None:
        plan.trial.set_user_attr("error", message[:2000])
        self.study.tell(plan.trial, state=TrialState.FAIL)
        self.tally.failed += 1
        self.tally.last_error = f"trial {plan.trial.number}: {message}"
        log.warning("trial %d failed: %s", plan.trial.number, message)
        self.mark(plan, "FAIL")

    def mark(self, plan: Plan, state: str) -> None:
        if plan in self.in_flight:
            self.in_flight.remove(plan)
        if self.runs:
            self.runs.mark_trial(plan.trial.number, state)

    def check_workers_succeeded(self) -> None:
        failed = self.workers.failed()
        if failed:
            which = [f"worker {w.number} exited with status {w.process.returncode} (its log: {w.log_path})"
                     for w in failed]  # fmt: skip
            raise SweepError(
                f"{len(failed)} worker process(es) of this sweep failed: {'; '.join(which)}. Their finished trials "
                "are kept in the study; fix the cause and re-run to continue."
            )

    def check_failures(self) -> None:
        allowed = self.s.max_failure_rate * self.s.n_trials
        if self.tally.failed > allowed:
            raise SweepError(
                f"Stopping the sweep: {self.tally.failed} trials failed in this run, more than "
                f"hydra.sweeper.max_failure_rate={self.s.max_failure_rate} of n_trials={self.s.n_trials}. Last error: "
                f"{self.tally.last_error}. Finished trials are kept in the study; fix the cause and re-run to continue."
            )

    def interrupt(self) -> None:
        """Ctrl-C: the trials in flight are marked FAIL (interrupted) and queued again, so a re-run redoes them."""
        for plan in list(self.in_flight):
            requeue(self.study, plan.trial._trial_id, plan.trial.number, plan.trial.params)
            self.mark(plan, "INTERRUPTED")
        log.warning("Interrupted. Re-run the same command to continue study %r.", self.study_name)

    # ---------------------------------------------------------------- end
    def finish(self, status: str) -> None:
        if self.is_worker:  # the command that started this worker reports on the whole study
            print(f"worker {self.s.worker_id}: {self.summary_line(self.tally)}", flush=True)
            return
        tally = self.tally.plus(tally_of(self.study, self.workers.names()))
        failed_workers = self.workers.failed() if status == "FINISHED" else []  # interrupted ones exit non-zero
        rows = report.leaderboard_rows(self.study, self.objectives)
        artifacts = [report.write_csv(rows, self.sweep_dir / "leaderboard.csv")]
        lines = [self.summary_line(tally), report.format_table(rows, limit=20)]
        lines += [f"Worker {w.number} exited with status {w.process.returncode}: see {w.log_path}"
                  for w in failed_workers]  # fmt: skip
        best = report.best_trained(self.study)
        if len(self.directions) > 1:
            front_text, files = report.write_pareto(self.study, self.objectives, self.sweep_dir)
            lines.append(front_text)
            artifacts += files
        if best is not None and status == "FINISHED":
            path = self.export(best)
            lines.append(f"Best trial {best.number} written to {path}")
            artifacts.append(path)
        print("\n".join(lines), flush=True)
        (self.sweep_dir / "summary.txt").write_text("\n".join(lines) + "\n")
        if self.runs:
            metrics = {"trials_complete": tally.complete, "trials_pruned": tally.pruned,
                       "trials_rejected": tally.rejected, "trials_failed": tally.failed}  # fmt: skip
            if best is not None:
                metrics.update({f"best_{k}": v for k, v in zip(self.objectives, best.values, strict=False)})
            status = "FAILED" if failed_workers else status
            self.runs.finish(status, metrics, artifacts + [self.sweep_dir / "summary.txt"])

    def summary_line(self, t: Tally) -> str:
        return (
            f"Optuna study {self.study_name!r} ({redact(self.storage_url)}): this run {t.complete} complete, "
            f"{t.pruned} pruned, {t.rejected} rejected over budget (not trained), {t.failed} failed; "
            f"the study now holds {len(self.study.trials)} trials ({counted(self.study)} count towards "
            f"n_trials={self.s.n_trials})."
        )

    def export(self, best: optuna.trial.FrozenTrial) -> Path:
        out_dir = Path(self.s.found_model_dir) if self.s.found_model_dir else primary_config_dir(self.config)
        cfg = self.compose(best.user_attrs["overrides"], what=f"best trial {best.number}")
        if "model" not in cfg:
            return report.write_csv([{"trial": best.number, **best.params}], self.sweep_dir / "best_trial.csv")
        return report.write_found_model(cfg, best, self.study_name, self.objectives, out_dir)


# -------------------------------------------------------------------- helpers
def app_name(task_function: TaskFunction, config: DictConfig) -> str:
    """The app's package for `python -m pkg` (its module is then __main__), else the module or job name."""
    module = task_function.__module__
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        return spec.name.split(".")[0] if spec else str(config.hydra.job.name)
    return module.split(".")[0]


def directions_of(direction: Any) -> list[str]:
    directions = [direction] if isinstance(direction, str) else list(direction)
    bad = [d for d in directions if d not in ("maximize", "minimize")]
    if bad or not directions:
        raise SweepError(f"hydra.sweeper.direction must be maximize, minimize or a list of them, got {direction}.")
    return directions


def objectives_of(objectives: list[str], directions: list[str]) -> list[str]:
    if len(objectives) < len(directions):
        raise SweepError(
            f"hydra.sweeper.direction has {len(directions)} entries but hydra.sweeper.objectives names only "
            f"{objectives}: name one returned value per direction."
        )
    return objectives[: len(directions)]


def default_study_name(task_name: str, directions: list[str], objectives: list[str]) -> str:
    return "-".join([task_name] + [f"{d[:3]}_{o}" for d, o in zip(directions, objectives, strict=False)])


def load_callable(path: str | None, what: str):
    if not path:
        return None
    try:
        return get_method(path)
    except Exception as exc:
        raise SweepError(f"hydra.sweeper.{what}={path!r} is not an importable function: {report_line(exc)}") from None


def as_dict(node: Any) -> dict:
    return OmegaConf.to_container(node) if node is not None else {}


def first_value(distribution) -> Any:
    return distribution.choices[0] if hasattr(distribution, "choices") else distribution.low


def report_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if text.endswith(".") else text + "."


def counted(study: optuna.Study) -> int:
    """Trials that count towards n_trials: trained or training. Rejected ones cost nothing and interrupted ones
    are queued again, so neither counts."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                                          TrialState.RUNNING))  # fmt: skip
        if not t.user_attrs.get("rejected") and not t.user_attrs.get("interrupted")
    )


def tally_of(study: optuna.Study, workers: set[str]) -> Tally:
    """What the given worker processes did, read from the study (each trial names its worker as host:pid)."""
    tally = Tally()
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("worker") not in workers or t.user_attrs.get("interrupted"):
            continue
        if t.user_attrs.get("rejected"):
            tally.rejected += 1
        elif t.state == TrialState.COMPLETE:
            tally.complete += 1
        elif t.state == TrialState.PRUNED:
            tally.pruned += 1
        elif t.state == TrialState.FAIL:
            tally.failed += 1
    return tally


def requeue(study: optuna.Study, trial_id: int, number: int, params: dict[str, Any]) -> None:
    # Through the storage: the trial may belong to a worker that is gone, so there is no Trial object for it.
    study._storage.set_trial_user_attr(trial_id, "interrupted", True)
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    study.enqueue_trial(params, user_attrs={"retry_of": number})


def recover_dead_trials(study: optuna.Study) -> None:
    """A worker killed hard (kill -9, a closed terminal) leaves RUNNING trials; on this host we can tell whether
    their process is gone, and queue them again. Trials of live workers are left alone."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(trial.user_attrs.get("worker", "")).partition(":")
        if worker_host == host and pid.isdigit() and not process_alive(int(pid)):
            log.warning("trial %d was left running by a dead worker (pid %s): queued again", trial.number, pid)
            requeue(study, trial._trial_id, trial.number, trial.params)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def grid_exhausted(study: optuna.Study) -> bool:
    sampler = study.sampler
    return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)


def primary_config_dir(config: DictConfig) -> Path:
    for source in config.hydra.runtime.config_sources:
        if source.provider == "main" and source.schema == "file":
            return Path(source.path) / "model" / "found"
    return Path(config.hydra.sweep.dir) / "found"

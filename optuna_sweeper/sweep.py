"""One `-m hydra/sweeper=optuna` command from start to end: check the settings, open the study, start the extra
worker processes, run trials until the study holds n_trials, then summarise and publish. A worker process runs
the same code with hydra.sweeper.worker_id > 0 and leaves the summary to the command that started it."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.types import Transformer
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from optuna_sweeper.budget import ParamBudget
from optuna_sweeper.console import quiet_jobs
from optuna_sweeper.credentials import keep_passwords_out
from optuna_sweeper.errors import SweepError, one_line
from optuna_sweeper.finalists import (
    FinalistSettings,
    finalist_study_name,
    finalists,
    open_finalist_study,
    queue_runs,
    wait_for_round,
    wait_until_settled,
    who,
)
from optuna_sweeper.outcomes import Attr, count, outcome_of
from optuna_sweeper.progress import Progress
from optuna_sweeper.publish import BestTrial, publish
from optuna_sweeper.settings import Resolved, resolve, worker_name
from optuna_sweeper.space import SearchSpace, first_value, override_text, parse_search_space
from optuna_sweeper.storage import load_study, redact
from optuna_sweeper.study import enqueue_warm_start, open_study, pruner_config, worker_alive
from optuna_sweeper.summary import StageTwo, describe_stage_two, stage_two_summary, summarise
from optuna_sweeper.trials import TrialLoop
from optuna_sweeper.workers import INTERRUPT_GRACE_S, WorkerPool, ignore_further_interrupts, stop_when_orphaned

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

HPARAMS_SEARCH = "hparams_search"  # lightning-hydra-template's name for an app's group of search spaces


class SweepCommand:
    def __init__(
        self,
        settings: DictConfig,
        config: DictConfig,
        config_loader: Any,
        launcher: Launcher,
        app_name: str,
        arguments: list[str],
    ) -> None:
        self.config, self.config_loader, self.launcher = config, config_loader, launcher
        # First: nothing below may see a password (credentials.py says why and where it goes instead).
        arguments, self.passwordless = keep_passwords_out(settings, config, list(arguments))
        self.settings, default_search = self.with_default_search(settings)
        self.run: Resolved = resolve(
            self.settings, app_name, str(config.hydra.runtime.cwd), str(config.hydra.sweep.dir)
        )
        self.space: SearchSpace = parse_search_space(as_dict(self.settings.params), default_search + list(arguments))
        self.workers = WorkerPool()  # the processes this command started (none in a worker)
        self.final_settings = FinalistSettings.from_config(self.settings.finalists)
        self.loops: list[TrialLoop] = []  # stage 1, then stage 2 when it starts
        self.progress: Progress | None = None

    def with_default_search(self, settings: DictConfig) -> tuple[DictConfig, list[str]]:
        """No params declared: search the app's `hparams_search/<default_hparams_search>` config, if it has one,
        as if `+hparams_search=<name>` had been typed. Declared params are searched alone, never joined to it."""
        name = settings.default_hparams_search
        if settings.params or not name or name not in self.config_loader.get_group_options(HPARAMS_SEARCH):
            return settings, []
        selection = [f"+{HPARAMS_SEARCH}={name}"]
        return self.compose(selection, f"the default search space {HPARAMS_SEARCH}/{name}").hydra.sweeper, selection

    def compose(self, overrides: list[str], what: str) -> DictConfig:
        try:
            return self.config_loader.load_sweep_config(self.config, overrides)
        except HydraException as exc:
            raise SweepError(
                f"Hydra could not compose the config for {what} ({' '.join(overrides)}): {one_line(exc)} Check "
                "the keys and values in hydra.sweeper.params and on the command line."
            ) from None

    # ---------------------------------------------------------------- the command
    def execute(self) -> list[JobReturn]:
        run, settings = self.run, self.settings
        if not run.is_worker:
            for note in run.notes:
                log.warning(note)
        self.probe_config()  # a typo in a key fails here, before anything is recorded
        if self.mlflow_on():
            from optuna_sweeper.mlflow_runs import check_server, tracking_uri  # MLflow takes seconds to import

            check_server(tracking_uri(self.config.tracking))
        study = open_study(run, settings.sampler, self.space)
        # Loaded after the cheap checks: the app's functions may import a deep-learning framework.
        counter = load_callable(settings.param_counter, "param_counter")
        loop = TrialLoop(
            run=run,
            study=study,
            space=self.space,
            n_trials=settings.n_trials,
            max_failure_rate=settings.max_failure_rate,
            launcher=self.launcher,
            compose=self.compose,
            app_config=self.base_config(),
            pruner=pruner_config(settings.pruner, run.directions),
            budget=ParamBudget(counter, settings.rejected_value) if counter else None,
            custom_space=load_callable(settings.custom_search_space, "custom_search_space"),
            job_extra=self.quiet_jobs(),
            launch_log=run.sweep_dir / "launches.log",
        )
        export = self.exporter(load_callable(settings.exporter, "exporter"))
        if not run.is_worker:  # queued before the workers start, so no two processes race to queue the seeds
            adapter = load_callable(settings.warm_start_adapter, "warm_start_adapter")
            enqueue_warm_start(study, settings.warm_start, self.space, loop.custom_space, loop.app_config, adapter)
        loop.runs = self.start_mlflow(loop.pruner, study)
        remaining = max(0, settings.n_trials - count(study.get_trials(deepcopy=False)).counted)
        log.info(
            "Optuna study %r in %s: %d trials to reach n_trials=%d",
            run.study_name,
            redact(run.storage_url),
            remaining,
            settings.n_trials,
        )
        status = "FAILED"
        self.loops = [loop]
        self.progress = self.watch(study, settings.n_trials, run.objectives)
        try:
            if run.n_workers > 1 and not run.is_worker:
                self.workers.start(run.n_workers - 1, run.sweep_dir, self.worker_overrides(loop))
            if run.is_worker:
                stop_when_orphaned(os.getppid())
            loop.run_until_done()
            if self.final_settings.top_k:
                self.run_stage_two(loop)
            status = "FINISHED"
            self.workers.wait()  # the summary and the exported best trial cover their trials too
        except KeyboardInterrupt:
            status = "KILLED"
            if run.is_worker:
                ignore_further_interrupts()
            for each in self.loops:
                each.interrupt()
            raise
        except BaseException as exc:
            for each in self.loops:
                each.fail_pending(exc)
            raise
        finally:
            self.workers.stop(grace_s=INTERRUPT_GRACE_S if status == "KILLED" else 0.0)
            if self.progress is not None:
                self.progress.stop()
            self.finish(loop, status, export)
        self.check_workers_succeeded()
        return loop.returns

    def run_stage_two(self, stage_one: TrialLoop) -> None:
        """Every process of the sweep waits for stage 1 to settle, then takes stage-2 runs until none is left."""
        run = self.run
        wait_until_settled(stage_one.study, recover=stage_one.run_until_done)
        if self.progress is not None:
            self.progress.stop()
        study, run_two = open_finalist_study(run)
        if run.is_worker:
            jobs = wait_for_round(study, run, is_alive=worker_alive)
        else:
            jobs = queue_runs(stage_one.study, study, self.final_settings, run.sweep_id)
            log.info("Stage 2: %d runs (%s)", jobs, describe_stage_two(self.final_settings))
        loop = dataclasses.replace(
            stage_one,
            run=run_two,
            study=study,
            space=SearchSpace(),
            n_trials=jobs,
            pruner=None,  # the full schedule, never stopped early
            budget=None,  # the finalists passed the budget in stage 1
            custom_space=None,
            runs=stage_one.runs.for_study(run_two.study_name) if stage_one.runs else None,
            preset_only=True,
            subdir_prefix="final_",
            pending=[],
            returns=[],
        )
        self.loops.append(loop)
        self.progress = self.watch(study, jobs, run_two.objectives, label=finalist_label, prefix="stage 2 ")
        if loop.runs and not run.is_worker:
            outcomes = {t.number: outcome_of(t) for t in study.get_trials(deepcopy=False)}
            loop.runs.settle_trial_runs(outcomes)
        loop.run_until_done()
        stage_one.returns += loop.returns

    def watch(self, study: optuna.Study, n_trials: int, objectives: list[str], **kw) -> Progress | None:
        """The sweep command's progress view (a worker's console is its log file)."""
        if self.run.is_worker or not self.settings.progress:
            return None
        return Progress(study, n_trials, objectives, **kw).start()

    def quiet_jobs(self) -> list[str]:
        """The jobs' extra overrides that keep their console to the progress view (console.py); none without it."""
        if not self.settings.progress:
            return []
        return quiet_jobs(self.config, getattr(self.launcher, "config", None) or self.config)

    def base_config(self) -> DictConfig:
        """What every trial starts from: the app's config with the search's fixed overrides (e.g. the default
        search's budget), as a custom_search_space should see it (mnist_sweep's sizes its widths to the budget)."""
        return self.compose([f"{k}={v}" for k, v in self.space.fixed.items()], what="the search space")

    def probe_config(self) -> None:
        probe = [f"{k}={override_text(first_value(d))}" for k, d in self.space.distributions.items()]
        self.compose([f"{k}={v}" for k, v in self.space.fixed.items()] + probe, what="the search space")

    def start_mlflow(self, pruner: dict | None, study: optuna.Study):
        if not self.mlflow_on():
            return None
        from optuna_sweeper.mlflow_runs import SweepRuns, sweep_params

        run, settings = self.run, self.settings
        finalists_text = (
            f"{who(self.final_settings)}, seeds {self.final_settings.seeds}" if self.final_settings.top_k else "none"
        )
        params = sweep_params(run, settings, self.space, pruner, finalists_text)
        # A worker's trial runs nest under the sweep run of the command that started it.
        runs = SweepRuns(self.config.tracking, run.study_name, params, settings.parent_run_id, run.sweep_id)
        if not run.is_worker:
            runs.end_dead_sweeps(is_dead=lambda command: not worker_alive(command))
            outcomes = {t.number: outcome_of(t) for t in study.get_trials(deepcopy=False)}
            runs.settle_trial_runs(outcomes)
        return runs

    def mlflow_on(self) -> bool:
        """A parent run per sweep and a child run per trial, when asked for and the app has a `tracking` node."""
        return bool(self.settings.mlflow) and self.config.get("tracking") is not None

    def worker_overrides(self, loop: TrialLoop) -> Callable[[int], list[str]]:
        def overrides(number: int) -> list[str]:
            # The sweep dir as resolved here: in the worker, ${now:...} would give the worker's own start time.
            extra = [
                *self.passwordless,  # instead of the command line's URLs with a password (given in the env)
                "hydra.sweeper.n_workers=1",
                f"hydra.sweeper.worker_id={number}",
                f"hydra.sweeper.sweep_id={Transformer.str(self.run.sweep_id)}",
                f"hydra.sweep.dir={Transformer.str(str(self.run.sweep_dir))}",
            ]
            return extra + ([f"hydra.sweeper.parent_run_id='{loop.runs.parent_id}'"] if loop.runs else [])

        return overrides

    def exporter(self, app_exporter: Callable | None) -> Callable | None:
        """The app's exporter: fn(cfg, best) -> the path it wrote, where cfg is the best trial's composed config
        and best a publish.BestTrial."""
        if app_exporter is None:
            return None

        def export(best: BestTrial) -> Path:
            return app_exporter(self.compose(best.overrides, what=f"best trial {best.number}"), best)

        return export

    # ---------------------------------------------------------------- the end
    def finish(self, loop: TrialLoop, status: str, export: Callable | None) -> None:
        run = self.run
        if run.is_worker:  # the command that started this worker reports on the whole study
            mine = count(loop.study.get_trials(deepcopy=False), worker=worker_name())
            print(f"worker {self.settings.worker_id}: Optuna study {run.study_name!r}: {mine.line()}", flush=True)
            return
        summary = summarise(
            loop.study,
            run.study_name,
            redact(run.storage_url),
            self.settings.n_trials,
            run.objectives,
            stage_two=self.stage_two_summary(loop.study),
            sweep=run.sweep_id,
        )
        if status == "FINISHED":  # an interrupted worker exits non-zero: no news
            summary.problems = [
                f"Worker {w.number} exited with status {w.process.returncode}: see {w.log_path}"
                for w in self.workers.failed()
            ]
        out_dir = Path(self.settings.export_dir) if self.settings.export_dir else None
        publish(summary, loop.study, run.objectives, run.sweep_dir, status, export, loop.runs, out_dir)

    def stage_two_summary(self, stage_one: optuna.Study) -> StageTwo | None:
        if not self.final_settings.top_k:
            return None
        try:
            stage_two = load_study(self.run.storage_url, finalist_study_name(self.run.study_name))
        except KeyError:  # the sweep stopped before stage 2
            return None
        maximize = self.run.directions[0] == "maximize"
        found = finalists(stage_one, stage_two)
        return stage_two_summary(found, self.final_settings, self.run.objectives[0], maximize)

    def check_workers_succeeded(self) -> None:
        failed = self.workers.failed()
        if failed:
            which = [
                f"worker {w.number} exited with status {w.process.returncode} (its log: {w.log_path})" for w in failed
            ]
            raise SweepError(
                f"{len(failed)} worker process(es) of this sweep failed: {'; '.join(which)}. Their finished trials "
                "are kept in the study; fix the cause and re-run to continue."
            )


def finalist_label(trial) -> str:
    return f"trial {trial.user_attrs.get(Attr.FINALIST_OF)} seed {trial.user_attrs.get(Attr.SEED)}"


def load_callable(path: str | None, what: str):
    if not path:
        return None
    try:
        return get_method(path)
    except Exception as exc:
        raise SweepError(f"hydra.sweeper.{what}={path!r} is not an importable function: {one_line(exc)}") from None


def as_dict(node: Any) -> dict:
    return OmegaConf.to_container(node) if node is not None else {}

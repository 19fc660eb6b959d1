"""One `-m hydra/sweeper=optuna` command from start to end: check the settings, open the study, start the extra
worker processes, run trials until the study holds n_trials, then summarise and publish. A worker process runs
the same code with hydra.sweeper.worker_id > 0 and leaves the summary to the command that started it."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from optuna_sweeper import stage_two
from optuna_sweeper.budget import ParamBudget
from optuna_sweeper.console import quiet_jobs
from optuna_sweeper.credentials import keep_passwords_out
from optuna_sweeper.errors import SweepError, one_line
from optuna_sweeper.finalists import FinalistSettings, wait_until_settled, who
from optuna_sweeper.outcomes import count, outcomes_by_number
from optuna_sweeper.progress import Progress
from optuna_sweeper.publish import BestTrial, publish
from optuna_sweeper.settings import Resolved, pid_on_this_host, resolve, worker_name
from optuna_sweeper.space import SearchSpace, first_value, override_text, parse_search_space
from optuna_sweeper.storage import redact
from optuna_sweeper.study import enqueue_warm_start, open_study, pruner_config, shared_deadline, worker_alive
from optuna_sweeper.summary import summarise
from optuna_sweeper.trials import TrialLoop
from optuna_sweeper.workers import (
    INTERRUPT_GRACE_S,
    WorkerPool,
    ignore_further_interrupts,
    listen_for_stop,
    worker_overrides,
)

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
        if run.stage_one_deadline is not None and settings.stage_one_deadline is None:  # not given by the command
            own, deadline = run.stage_one_deadline, shared_deadline(study, run.stage_one_deadline)
            run = self.run = dataclasses.replace(run, stage_one_deadline=deadline)
            if deadline != own:
                log.info("Stage 1's deadline is the one another command on this study set (it is still ahead)")
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
            deadline=run.stage_one_deadline,
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
        if run.stage_one_deadline is not None and not run.is_worker:
            log.info(
                "Stage 1 stops starting trials at %s (hydra.sweeper.stage_one_minutes=%g)",
                time.strftime("%H:%M:%S", time.localtime(run.stage_one_deadline)),
                settings.stage_one_minutes,
            )
        status = "FAILED"
        self.loops = [loop]
        self.progress = self.watch(study, settings.n_trials, run.objectives, deadline=run.stage_one_deadline)
        try:
            if run.n_workers > 1 and not run.is_worker:
                parent_run_id = loop.runs.parent_id if loop.runs else None
                self.workers.start(
                    run.n_workers - 1, run.sweep_dir, worker_overrides(run, self.passwordless, parent_run_id)
                )
            if run.is_worker:
                listen_for_stop(pid_on_this_host(run.sweep_id) or os.getppid())
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
        self.workers.raise_if_any_failed()
        return loop.returns

    def run_stage_two(self, stage_one: TrialLoop) -> None:
        """Every process of the sweep waits for stage 1 to settle, then takes stage-2 runs until none is left."""
        wait_until_settled(stage_one.study, recover=stage_one.run_until_done)
        if self.progress is not None:
            self.progress.stop()
        loop = stage_two.stage_two_loop(stage_one, self.run, self.final_settings)
        self.loops.append(loop)
        self.progress = self.watch(
            loop.study, loop.n_trials, loop.run.objectives, label=stage_two.label, prefix="stage 2 "
        )
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
            runs.settle_trial_runs(outcomes_by_number(study))
        return runs

    def mlflow_on(self) -> bool:
        """A parent run per sweep and a child run per trial, when asked for and the app has a `tracking` node."""
        return bool(self.settings.mlflow) and self.config.get("tracking") is not None

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
            stage_two=stage_two.summary(run, self.final_settings, loop.study),
            sweep=run.sweep_id,
        )
        if loop.out_of_time:
            summary.notes.append(
                f"Stage 1 stopped at hydra.sweeper.stage_one_minutes={self.settings.stage_one_minutes:g} with "
                f"{summary.counted} of n_trials={self.settings.n_trials} counted; the same command continues the "
                "study towards n_trials."
            )
        if status == "FINISHED":  # an interrupted worker exits non-zero: no news
            summary.problems = [
                f"Worker {w.number} exited with status {w.process.returncode}: see {w.log_path}"
                for w in self.workers.failed()
            ]
        out_dir = Path(self.settings.export_dir) if self.settings.export_dir else None
        publish(summary, loop.study, run.objectives, run.sweep_dir, status, export, loop.runs, out_dir)


def load_callable(path: str | None, what: str):
    if not path:
        return None
    try:
        return get_method(path)
    except Exception as exc:
        raise SweepError(f"hydra.sweeper.{what}={path!r} is not an importable function: {one_line(exc)}") from None


def as_dict(node: Any) -> dict:
    return OmegaConf.to_container(node) if node is not None else {}

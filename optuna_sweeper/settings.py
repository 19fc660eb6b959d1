"""Checks of hydra.sweeper.* and the values derived from them, done before anything is recorded.

Keys shared with the released hydra-optuna-sweeper (sampler, direction, storage, study_name, n_trials, n_jobs,
params, custom_search_space, max_failure_rate) keep their meaning; where one means something different here,
`compatibility_notes` says so in one line at start-up.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from optuna_sweeper.errors import SweepError
from optuna_sweeper.storage import DEFAULT_JOURNAL, in_memory, redact, resolve_storage

SEEDS_PER_COMMAND = 1000  # sampler seeds per sweep command: seed + worker + 1000 * command_index (make_sampler)
DEFAULT_WORKERS = 2  # measured on 2 cores: two 1-thread workers beat one 2-thread worker (README, "Parallel workers")


@dataclass(frozen=True)
class Resolved:
    """What the settings come to for this command."""

    directions: list[str]
    objectives: list[str]
    study_name: str
    storage_url: str
    n_workers: int
    n_jobs: int
    sweep_dir: Path
    sweep_id: str  # the sweep command's id (its first process, host:pid): written on every trial it runs
    is_worker: bool
    notes: list[str] = field(default_factory=list)
    worker_id: int = 0  # hydra.sweeper.worker_id: 0 for the sweep command's own process
    command_index: int = 0  # hydra.sweeper.command_index: this command's number among commands sharing the study
    stage_one_deadline: float | None = None  # unix time past which no stage-1 trial starts (stage_one_minutes)

    @property
    def seed_stream(self) -> int:
        """What this process adds to a seeded sampler's seed: unique per worker process of every sweep command."""
        return self.worker_id + SEEDS_PER_COMMAND * self.command_index


def worker_name(pid: int | None = None) -> str:
    """How a process is named on the trials it runs (user attr `worker`): host:pid."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def pid_on_this_host(name: str) -> int | None:
    """The pid in a worker name, when that worker ran on this host (where we can tell whether it is alive)."""
    host, _, pid = str(name).rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def resolve(settings: DictConfig, app_name: str, launch_dir: str, sweep_dir: str) -> Resolved:
    directions = directions_of(settings.direction)
    objectives = objectives_of(list(settings.objectives), directions)
    storage_url = resolve_storage(settings.storage, launch_dir)
    n_jobs = 1 if settings.n_jobs is None else settings.n_jobs
    n_workers = (
        settings.n_workers
        if settings.n_workers is not None
        else (1 if settings.n_jobs is not None else DEFAULT_WORKERS)
    )
    check_parallelism(n_workers, n_jobs, storage_url)
    check_range("max_failure_rate", settings.max_failure_rate, 0.0, None)
    check_range("n_trials", settings.n_trials, 0, None)
    check_range("command_index", settings.command_index, 0, None)
    if settings.stage_one_minutes is not None and settings.stage_one_minutes <= 0:
        raise SweepError(
            f"hydra.sweeper.stage_one_minutes must be more than 0, got {settings.stage_one_minutes}: it is how many "
            "minutes after the command starts stage 1 stops starting trials (null: no limit, n_trials alone)."
        )
    return Resolved(
        directions=directions,
        objectives=objectives,
        study_name=settings.study_name or default_study_name(app_name, directions, objectives),
        storage_url=storage_url,
        n_workers=n_workers,
        n_jobs=n_jobs,
        # Absolute: the workers get it as their sweep dir, and the log paths printed name it.
        sweep_dir=Path(launch_dir) / sweep_dir,
        sweep_id=settings.sweep_id or worker_name(),
        is_worker=settings.worker_id > 0,
        notes=compatibility_notes(settings, n_workers),
        worker_id=settings.worker_id,
        command_index=settings.command_index,
        stage_one_deadline=stage_one_deadline(settings),
    )


def stage_one_deadline(settings: DictConfig) -> float | None:
    """A worker takes its command's deadline; the command sets it from its own start."""
    if settings.stage_one_deadline is not None:
        return settings.stage_one_deadline
    if settings.stage_one_minutes is None:
        return None
    return time.time() + 60 * settings.stage_one_minutes


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


def default_study_name(app_name: str, directions: list[str], objectives: list[str]) -> str:
    """Stable across re-runs of the same command, so a re-run resumes the study."""
    return "-".join([app_name] + [f"{d[:3]}_{o}" for d, o in zip(directions, objectives, strict=False)])


def check_parallelism(n_workers: int, n_jobs: int, storage_url: str) -> None:
    if n_workers < 1:
        raise SweepError(
            f"hydra.sweeper.n_workers must be 1 or more, got {n_workers}: it is the number of processes "
            "working on the study (this command plus n_workers-1 copies it starts); 1 runs this process only."
        )
    if n_jobs < 1:
        raise SweepError(
            f"hydra.sweeper.n_jobs must be 1 or more, got {n_jobs}: trials handed to the launcher at once."
        )
    if n_workers > 1 and in_memory(storage_url):
        raise SweepError(
            f"hydra.sweeper.storage={redact(storage_url)} is an in-memory database, which the extra worker "
            f"processes of hydra.sweeper.n_workers={n_workers} cannot share. Set hydra.sweeper.n_workers=1, "
            "or use a journal file (the default), sqlite:///file.db or a PostgreSQL URL."
        )


def check_range(key: str, value: float, low: float, high: float | None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"{low} or more"
        raise SweepError(f"hydra.sweeper.{key} must be {bound}, got {value}.")


def compatibility_notes(settings: DictConfig, n_workers: int) -> list[str]:
    """One line for each hydra-optuna-sweeper key given that works differently here."""
    notes = []
    if settings.storage is None:
        notes.append(
            f"hydra.sweeper.storage=null: the study is kept in {DEFAULT_JOURNAL} in the launch directory "
            "(hydra-optuna-sweeper kept it in memory), so re-running the command resumes it."
        )
    if settings.n_jobs is not None and settings.n_workers is None:
        notes.append(
            f"hydra.sweeper.n_jobs={settings.n_jobs}: this process hands {settings.n_jobs} trial(s) at a time to the "
            "launcher, as hydra-optuna-sweeper does, and starts no extra worker processes; set hydra.sweeper.n_workers "
            f"for those (the default without n_jobs is {DEFAULT_WORKERS})."
        )
    return notes

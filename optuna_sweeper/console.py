"""What a sweep command's console shows. With the progress view on (hydra.sweeper.progress), one line per finished
trial replaces Hydra's launch lines (hundreds of characters of overrides per trial) and the jobs' INFO logs; the
jobs' log files and the sweep's launches.log keep everything."""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

# The sweeper's own start-up lines (the study, the workers' log files), shown before Hydra's logging takes over.
START_UP_LOGGERS = ("optuna_sweeper.sweep", "optuna_sweeper.workers")


def quiet_jobs(config: DictConfig, launcher_config: DictConfig) -> list[str]:
    """Set the launcher's console handler (used by this process) to WARNING, and return the override that does the
    same for each job's console; Optuna's "Trial N finished" lines, which repeat the progress view's, go too."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for logging_cfg in (config.hydra.hydra_logging, launcher_config.hydra.hydra_logging):
        console = OmegaConf.select(logging_cfg, "handlers.console")
        if console is not None:
            with open_dict(console), read_write(console):
                console.level = "WARNING"
    for handler in logging.getLogger().handlers:  # as configured already, before the first launch
        if type(handler) is logging.StreamHandler:  # the console, not a FileHandler (a subclass)
            handler.addFilter(start_up_lines_only)
    if OmegaConf.select(config.hydra.job_logging, "handlers.console") is None:
        return []  # an app's own job logging without a console handler: nothing to quieten
    return ["++hydra.job_logging.handlers.console.level=WARNING"]


def start_up_lines_only(record: logging.LogRecord) -> bool:
    """The console before the first launch: the sweep's own start-up lines and warnings; after it, Hydra's logging
    config (its console at WARNING) takes over."""
    return record.levelno >= logging.WARNING or record.name in START_UP_LOGGERS

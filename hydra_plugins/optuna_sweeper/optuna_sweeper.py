"""hydra/sweeper=optuna. Hydra imports this module on every app start (plugin discovery), so the sweep itself,
and Optuna with it, is imported only in `sweep()`, as Hydra's own Optuna sweeper does."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.optuna_sweeper.config import register

register()

COMPETITOR = "hydra_plugins.hydra_optuna_sweeper"  # the released hydra-optuna-sweeper (pins optuna<3)


def environment_problem() -> str | None:
    """What in this environment keeps the sweeper from working, in one paragraph; read without importing Optuna."""
    try:
        optuna_version = importlib.metadata.version("optuna")
    except importlib.metadata.PackageNotFoundError:
        optuna_version = "none"
    if importlib.util.find_spec(COMPETITOR) is not None:
        return (
            "The released hydra-optuna-sweeper is installed next to this project: it registers a second "
            f"hydra/sweeper=optuna and pins optuna<3 (optuna {optuna_version} is installed now). Remove it and "
            "restore Optuna 5: pip uninstall -y hydra-optuna-sweeper && pip install 'optuna>=5,<6'."
        )
    if not optuna_version.split(".")[0].isdigit() or int(optuna_version.split(".")[0]) < 5:
        return f"This sweeper needs Optuna 5, but optuna {optuna_version} is installed: pip install 'optuna>=5,<6'."
    return None


if importlib.util.find_spec(COMPETITOR) is not None:  # said at every start: that plugin may win hydra/sweeper=optuna
    print(f"optuna sweeper: warning: {environment_problem()}", file=sys.stderr, flush=True)


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = OmegaConf.create(settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.app_name = app_name(task_function, config)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[Any]:
        if problem := environment_problem():
            print(f"optuna sweeper: error: {problem}", file=sys.stderr, flush=True)
            sys.exit(2)
        from optuna_sweeper.errors import SweepError
        from optuna_sweeper.sweep import SweepCommand

        try:
            command = SweepCommand(
                self.settings, self.config, self.hydra_context.config_loader, self.launcher, self.app_name, arguments
            )
            return command.execute()
        except SweepError as exc:
            print(f"optuna sweeper: error: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM during a trial: its trials were queued again, no traceback
            print("optuna sweeper: interrupted; re-run the same command to continue.", file=sys.stderr, flush=True)
            sys.exit(130)


def app_name(task_function: TaskFunction, config: DictConfig) -> str:
    """The app's package for `python -m pkg` (its module is then __main__), else the module or job name."""
    module = task_function.__module__
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        return spec.name.split(".")[0] if spec else str(config.hydra.job.name)
    return module.split(".")[0]

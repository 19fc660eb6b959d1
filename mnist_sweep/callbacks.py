"""Hydra callbacks of the app (conf/config.yaml, hydra.callbacks): checks that must run before Hydra itself acts.

Hydra creates the run's output directory (hydra.run.dir, or hydra.sweep.dir for -m) before it calls the task, so
a directory that cannot be created would end in Hydra's traceback; on_run_start / on_multirun_start come first."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class CheckOutputDir(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        require_dir(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        require_dir(config.hydra.sweep.dir, "hydra.sweep.dir")


def require_dir(path: str, key: str) -> None:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"mnist_sweep: error: {key}={path} cannot be created ({exc.strerror or exc}). Point {key} at a folder you "
            f"can write, e.g. {key}=outputs/my_run; nothing was run or recorded.",
            file=sys.stderr,
        )
        sys.exit(2)

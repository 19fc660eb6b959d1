"""MLflow: one run per training job, nested under the sweep's parent run when a sweeper launched it."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import optuna
import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def flatten(node, prefix: str = "") -> dict[str, str]:
    """{"trainer": {"epochs": 15}} -> {"trainer.epochs": "15"}; list items get their index as a key."""
    if isinstance(node, dict | list):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        flat: dict[str, str] = {}
        for key, value in items:
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: str(node)}


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """`kill PID` (SIGTERM) would end Python without unwinding, leaving the MLflow run RUNNING; treat it as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def mlflow_run(cfg: DictConfig) -> Iterator[mlflow.ActiveRun]:
    """Start a run and always end it with a truthful status: FINISHED, FAILED (an exception) or KILLED (Ctrl-C),
    so no run is left RUNNING in `mlflow ui`. A trial stopped by the Optuna pruner is not a crash: FINISHED,
    tagged optuna_state=PRUNED."""
    t = cfg.tracking
    if t.tracking_uri:
        mlflow.set_tracking_uri(t.tracking_uri)
    mlflow.set_experiment(t.experiment)
    tags = {"model": cfg.model.name, **(t.tags or {})}
    run = mlflow.start_run(
        run_name=t.run_name, parent_run_id=t.parent_run_id, nested=t.parent_run_id is not None, tags=tags
    )
    try:
        with sigterm_as_interrupt():
            yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except optuna.TrialPruned:
        mlflow.set_tags({"optuna_state": "PRUNED", "optuna_pruned": "true"})
        mlflow.end_run("FINISHED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


def log_config(cfg: DictConfig, n_params: int) -> None:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    params = flatten(resolved)
    params.update({"model_name": cfg.model.name, "n_params": str(n_params)})
    # MLflow caps a param value at 6000 characters; a long block list is kept whole in config.yaml anyway.
    mlflow.log_params({k: v[:6000] for k, v in params.items()})
    mlflow.log_text(OmegaConf.to_yaml(resolved), "config.yaml")


def log_checkpoint(model: torch.nn.Module, out_dir: Path, as_mlflow_model: bool) -> Path:
    """The model's weights as checkpoints/best.pt, and optionally as an MLflow model that loads back on its own."""
    path = out_dir / "best.pt"
    torch.save(model.state_dict(), path)
    mlflow.log_artifact(str(path), "checkpoints")
    if as_mlflow_model:
        # Explicit requirements: MLflow would otherwise infer them by importing the model in a subprocess.
        mlflow.pytorch.log_model(
            model.cpu().eval(),
            name="model",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],  # pt2 needs no project code
            # pt2 (torch.export) format: a batch of 2 keeps the batch dimension dynamic (1 would be specialised).
            input_example=np.zeros((2, 1, 28, 28), dtype=np.float32),
        )
    return path

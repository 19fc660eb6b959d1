"""MLflow: one run per training job, nested under the sweep's parent run when a sweeper launched it. Every MLflow
call of a run is made here; train.py says what to record, this module says how."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from omegaconf import DictConfig, OmegaConf

from mnist_sweep import report
from mnist_sweep.data import Data
from mnist_sweep.engine import EpochMetrics, FitResult
from mnist_sweep.errors import UserError
from mnist_sweep.models import PLAIN, EvalViews
from mnist_sweep.sources import SOURCES

log = logging.getLogger(__name__)
# MLflow 3's kind for a model-training experiment. (Its 3.17 UI still opens on the GenAI pages until the user
# switches its browser-wide toggle to "Model training": see README, MLflow.)
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


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


def is_trial_pruned(exc: BaseException) -> bool:
    # Looked up, not imported: a single run never imports Optuna, and an exception can only be optuna.TrialPruned
    # if Optuna was imported by someone (the sweep trial's reporter).
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(exc, optuna.TrialPruned)


SERVER_TIMEOUT_S = 5  # MLflow's own client retries an absent server for minutes before it says anything


def check_server(cfg: DictConfig) -> None:
    """An http(s) tracking server must answer before any data is read; any HTTP reply counts as an answer."""
    uri = cfg.tracking.tracking_uri or mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=SERVER_TIMEOUT_S)
        except urllib.error.HTTPError:
            pass
        except (OSError, ValueError) as exc:
            raise UserError(
                f"The MLflow tracking server at {uri} does not answer ({getattr(exc, 'reason', exc)}). Start it "
                "(mlflow server --host ... --port ...), fix tracking.tracking_uri (or MLFLOW_TRACKING_URI), or leave "
                "it unset to log to sqlite:///mlflow.db in the launch directory."
            ) from None


@contextlib.contextmanager
def sqlite_creation_lock(uri: str) -> Iterator[None]:
    """Held while a run opens a sqlite tracking store. MLflow creates a missing sqlite database's tables without a
    lock of its own, so two runs started at once in a fresh launch directory both try, and the second fails with
    "table experiments already exists". An flock on the database's directory (no lock file left behind) lets one
    create the tables and the experiment while the other waits; a server or an existing store costs one flock. The
    sweeper takes the same flock when it opens the store (optuna_sweeper/mlflow_store.py, the same lines: a single
    run does not import the sweeper, tests/test_layout.py)."""
    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    parent = Path(path).resolve().parent if path is not None and not path.startswith(":memory:") else None
    if parent is None or not parent.is_dir():  # nothing to create twice, or MLflow's own error to come
        yield
        return
    directory = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(directory, fcntl.LOCK_EX)
        yield
    finally:
        os.close(directory)  # releases the lock


def use_experiment(cfg: DictConfig) -> None:
    t = cfg.tracking
    if t.tracking_uri:
        mlflow.set_tracking_uri(t.tracking_uri)
    with sqlite_creation_lock(mlflow.get_tracking_uri()):
        experiment = mlflow.set_experiment(t.experiment)
        if "mlflow.experimentKind" not in experiment.tags:
            mlflow.set_experiment_tags(EXPERIMENT_KIND)


@contextlib.contextmanager
def mlflow_run(cfg: DictConfig) -> Iterator[mlflow.ActiveRun]:
    """Start a run and always end it with a truthful status: FINISHED, FAILED (an exception) or KILLED (Ctrl-C),
    so no run is left RUNNING in `mlflow ui`. A trial stopped by the Optuna pruner is not a crash: FINISHED,
    tagged optuna_state=PRUNED."""
    use_experiment(cfg)
    t = cfg.tracking
    recipe, overrides = launch_recipe()
    tags = {"model": cfg.model.name, "recipe": recipe, "overrides": " ".join(overrides)[:5000], **(t.tags or {})}
    # Hydra reads a tag given as `tracking.tags.optuna_trial=3` as the int 3; an MLflow server takes strings only.
    tags = {key: str(value) for key, value in tags.items()}
    run = mlflow.start_run(
        run_name=t.run_name, parent_run_id=t.parent_run_id, nested=t.parent_run_id is not None, tags=tags
    )
    try:
        with sigterm_as_interrupt():
            yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException as exc:
        if not is_trial_pruned(exc):
            mlflow.end_run("FAILED")
            raise
        mlflow.set_tags({"optuna_state": "PRUNED", "optuna_pruned": "true"})
        mlflow.end_run("FINISHED")
        raise
    mlflow.end_run("FINISHED")


# Overrides that name the run or link it to a sweep, rather than change what is trained.
BOOKKEEPING_KEYS = ("seed", "tracking", "optuna", "experiment", "hydra", "trainer.progress")


def launch_recipe() -> tuple[str, list[str]]:
    """The experiment preset the run started from (experiment=fast, else `defaults`) and the command-line
    overrides that change what is trained: `python -m mnist_sweep.results` names a recipe by them."""
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:  # called outside a Hydra app (tests, notebooks)
        return "defaults", []
    recipe = hydra_cfg.runtime.choices.get("experiment") or "defaults"
    overrides = [o for o in hydra_cfg.overrides.task if not is_bookkeeping(override_key(o))]
    return str(recipe), overrides


def is_bookkeeping(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in BOOKKEEPING_KEYS)


def override_key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def log_config(cfg: DictConfig, n_params: int, model_summary: str) -> None:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    params = flatten(resolved)
    params.update({"model_name": cfg.model.name, "n_params": str(n_params)})
    # MLflow caps a param value at 6000 characters; a long block list is kept whole in config.yaml anyway.
    mlflow.log_params({k: v[:6000] for k, v in params.items()})
    mlflow.log_text(OmegaConf.to_yaml(resolved), "config.yaml")
    mlflow.log_text(model_summary, "model_summary.txt")


def log_dataset(data: Data) -> None:
    """The data as an MLflow dataset input: the Dataset column of the runs table names it, with a digest of its
    content. Its source is the dataset's public address (torchvision's first mirror), not the folder it was read
    from: runs on a tracking server are read from other hosts, where that folder does not exist."""
    source = HTTPDatasetSource(SOURCES[data.name].mirrors[0])
    dataset = MetaDataset(source=source, name=data.name, digest=data.digest[:8])
    sizes = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
    mlflow.log_input(dataset, context="training", tags={f"{k}_images": str(v) for k, v in sizes.items()})


def log_epoch(m: EpochMetrics) -> None:
    mlflow.log_metrics(
        {
            "train_loss": m.train_loss,
            "train_acc": m.train_acc,
            "val_loss": m.val_loss,
            "val_acc": m.val_acc,
            "lr": m.lr,
            "epoch_seconds": m.seconds,
        },
        step=m.epoch,
    )


def log_result(result: FitResult, test_acc: float | None, n_params: int, macs: int, views: int = 1) -> None:
    """test_acc None: the run did not look at the test split (a stage-1 sweep trial). views: how many views of each
    image every evaluation averaged (trainer.tta_*), so an evaluation costs views x macs."""
    metrics = {
        "best_val_acc": result.best_val_acc,
        "best_epoch": result.best_epoch,
        "n_params": n_params,
        "macs": macs,
        "eval_views": views,
        "epochs_run": len(result.history),
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": result.train_seconds / max(len(result.history), 1),  # (epoch_seconds: per step)
        "images_per_second": result.images_per_second,
    }
    mlflow.log_metrics(metrics if test_acc is None else {**metrics, "test_acc": test_acc})
    mlflow.set_tag("stopped_early", str(result.stopped_early))


def log_figures(result: FitResult, data: Data, test_preds: torch.Tensor | None) -> None:
    figures = {"training_curves.png": report.training_curves(result.history, result.best_epoch)}
    if test_preds is not None:
        figures["confusion_matrix.png"] = report.confusion_matrix(data.test.labels, test_preds, data.classes)
        figures["misclassified.png"] = report.misclassified_grid(data.test.images, data.test.labels, test_preds)
    for name, fig in figures.items():
        mlflow.log_figure(fig, f"plots/{name}")
        report.close(fig)


def log_checkpoint(model: torch.nn.Module, out_dir: Path, as_mlflow_model: bool, views: EvalViews = PLAIN) -> Path:
    """The model's weights as checkpoints/best.pt, and optionally as an MLflow model that loads back on its own.
    views (trainer.tta_*): the MLflow model averages each image's logits over them, as the run's validation and
    test did, so that it serves the accuracy the run reports; best.pt stays the plain net's weights."""
    path = out_dir / "best.pt"
    torch.save(model.state_dict(), path)
    mlflow.log_artifact(str(path), "checkpoints")
    if as_mlflow_model:
        model = views.wrap(model)
        with warnings.catch_warnings():
            # torch.export warns about a deprecated internal default it uses itself: nothing the user can act on.
            warnings.simplefilter("ignore", UserWarning)
            # Explicit requirements: MLflow would otherwise infer them by importing the model in a subprocess.
            mlflow.pytorch.log_model(
                model.cpu().eval(),
                name="model",
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],  # pt2 needs no project code
                # pt2 (torch.export) format: a batch of 2 keeps the batch dimension dynamic (1 is specialised).
                input_example=np.zeros((2, 1, 28, 28), dtype=np.float32),
            )
    return path


def ui_link(run: mlflow.ActiveRun) -> str:
    """Where `mlflow ui` shows this run. MLflow 3.17's UI ignores the experiment-kind tag when it picks GenAI or
    model-training pages (a browser-wide toggle, GenAI at first): the workflowType parameter opens the run as a
    training run."""
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    link = f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning"
    return link if base == uri.rstrip("/") else f"{link} (after `mlflow ui` here)"


def log_timing(wall_seconds: float, phases: dict[str, float]) -> None:
    """The run's wall time from the start of train() and each phase's share (mnist_sweep.train.Stopwatch)."""
    mlflow.log_metrics({"wall_seconds": wall_seconds, **{f"seconds_{name}": s for name, s in phases.items()}})

"""Knowledge distillation (Hinton, Vinyals and Dean, 2015): the student learns from the labels and from a teacher's
softened predictions on the same augmented batch.

The teacher is a model an earlier run of this project logged to MLflow (`trainer.teacher`: runs:/<run_id>/model,
models:/<name>/<version>, or the model's folder), loaded with mlflow.pytorch.load_model. Honest only if the teacher
never saw the student's validation or test images: its run must have trained on the same dataset and split
(dataset.name, val_size, split_seed), which is checked against the run's logged params before anything is trained.
The loss is written here because torch has the two terms (cross_entropy, kl_div) but not their mix.
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from mnist_sweep.errors import UserError

# The dataset keys a teacher's run must share with the student: the training images it may have seen.
SPLIT_KEYS = ("dataset.name", "dataset.val_size", "dataset.split_seed")

# A sweep worker runs one trial after another in one process, each with the same teacher: it is loaded once per
# process and store. Sharing it is safe: the exported graph is inference-only and a forward pass changes nothing.
_loaded: dict[tuple[str, str, str], torch.nn.Module] = {}


def load_teacher(uri: str, cfg: DictConfig, device: torch.device) -> torch.nn.Module:
    """The teacher, on the device, after checking that its run trained on the student's split."""
    import mlflow  # here: the training loop imports this module for its loss alone
    from mlflow.exceptions import MlflowException

    if cfg.tracking.tracking_uri:  # the store the teacher's run is in: this run's
        mlflow.set_tracking_uri(cfg.tracking.tracking_uri)
    try:
        with artifact_progress_bars_off():  # get_model_info downloads the MLmodel file
            run_id = mlflow.models.get_model_info(uri).run_id
        params = mlflow.get_run(run_id).data.params if run_id else {}
    except (MlflowException, OSError) as exc:
        raise UserError(
            f"trainer.teacher={uri!r} is not a model this MLflow store can load ({str(exc).splitlines()[0]}). Give "
            "the model of an earlier run, e.g. trainer.teacher=runs:/<run_id>/model (the run ID is in the run's "
            "summary and in mlflow ui)."
        ) from None
    expected = {key: str(OmegaConf.select(cfg, key)) for key in SPLIT_KEYS}
    differ = {key: params.get(key, "not logged") for key in SPLIT_KEYS if params.get(key) != expected[key]}
    if differ:
        raise UserError(
            f"trainer.teacher={uri!r} (run {run_id}) did not train on this run's split: "
            + ", ".join(f"{key}={value} (this run: {expected[key]})" for key, value in differ.items())
            + ". A teacher that trained on other images may have seen this run's validation or test images, so its "
            "knowledge would leak into the figures. Distil from a run on the same dataset, val_size and split_seed."
        )
    # This project logs its models with torch.export (pt2): the graph was captured in eval mode (BatchNorm on its
    # running statistics, no dropout) and stays so; it takes no .eval().
    key = (uri, mlflow.get_tracking_uri(), str(device))
    if key not in _loaded:
        with artifact_progress_bars_off():
            _loaded[key] = mlflow.pytorch.load_model(uri, map_location=device)
    return _loaded[key]


@contextlib.contextmanager
def artifact_progress_bars_off():
    """MLflow draws a progress bar per artifact download: in a run's log (and in each sweep trial's) they are noise.
    A user who set MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR keeps their choice."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if name in os.environ:
        yield
        return
    os.environ[name] = "false"
    try:
        yield
    finally:
        del os.environ[name]


def distillation_loss(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    weight: float,
    temperature: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """(1 - weight) * cross-entropy with the labels + weight * T² * KL(teacher || student) at temperature T (T²
    keeps the soft term's gradients on the scale of the hard term's as T changes)."""
    hard = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    soft = F.kl_div(
        F.log_softmax(logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - weight) * hard + weight * temperature**2 * soft

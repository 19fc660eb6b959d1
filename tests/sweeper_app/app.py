"""A tiny Hydra app for the sweeper tests: the real sweeper, storage, budget hook and epoch hook, but no data and
no training. Each "epoch" is arithmetic on the knobs, so a whole sweep takes seconds."""

import contextlib
import json
import math
import os
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, float]:
    # Imported here, not at the top: the tests that stop at a bad input never pay for torch.
    from mnist_sweep.engine import EpochMetrics, check_finite
    from mnist_sweep.trial import epoch_hook

    record_launch(cfg)
    on_epoch_end = epoch_hook(cfg, cfg.epochs)
    with mlflow_run(cfg):
        if cfg.get("tracking") is not None:  # the config as params and artifact, as mnist_sweep's train logs it
            from mnist_sweep import tracking

            tracking.log_config(cfg, n_params=cfg.width * 100, model_summary="toy")
        acc = 0.0
        for epoch in range(1, cfg.epochs + 1):
            acc = (1 - (cfg.x - 0.3) ** 2) * (1 - 0.5**epoch)
            loss = math.nan if cfg.x > cfg.diverge_above else 1 - acc
            metrics = EpochMetrics(
                epoch=epoch, train_loss=loss, train_acc=acc, val_loss=loss, val_acc=acc, lr=0.1, seconds=0
            )
            on_epoch_end(metrics)
            check_finite(metrics)  # as mnist_sweep.engine.fit does after each epoch
            time.sleep(cfg.epoch_seconds)
    final = acc - 0.001 * cfg.seed  # seed 0 is stage 1's score
    return {"val_acc": final, "n_params": float(cfg.width * 100), "test_acc": final - 0.002}


def mlflow_run(cfg: DictConfig):
    """With a `tracking` node (the fault drill sets one), each trial is an MLflow run as in mnist_sweep."""
    if cfg.get("tracking") is None:
        return contextlib.nullcontext()
    from mnist_sweep import tracking

    return tracking.mlflow_run(cfg)


def record_launch(cfg: DictConfig) -> None:
    """One file per launched job, so a test can see which trials were trained."""
    jobs = Path(cfg.jobs_dir)
    jobs.mkdir(parents=True, exist_ok=True)
    number = cfg.optuna.trial_number if cfg.get("optuna") else "single"
    if cfg.get("optuna") and cfg.optuna.study_name.endswith(".finalists"):
        number = f"final-{number}"  # a stage-2 run: trial numbers of the second study start at 0 again
    record = {"pid": os.getpid(), "width": cfg.width, "x": cfg.x, "seed": cfg.seed, "epochs": cfg.epochs}
    record["slurm_job"] = os.environ.get("SLURM_JOB_ID")  # set when the job runs as a SLURM job (submitit launcher)
    (jobs / f"{number}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()

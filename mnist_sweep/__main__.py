"""`python -m mnist_sweep [overrides]`: one Hydra-composed training run (or a sweep of them with -m).

Thin on purpose: torch, MLflow and the training code are imported inside main(), so `--help`, `--cfg` and a bad
override answer without loading them."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_sweep.config import register_configs, validate
from mnist_sweep.errors import UserError

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, float]:
    hydra_cfg = HydraConfig.get()
    try:
        validate(cfg)  # before torch is imported: a bad value answers in a second
        from mnist_sweep.train import train
        from mnist_sweep.trial import epoch_hook

        return train(cfg, Path(hydra_cfg.runtime.output_dir), on_epoch_end=epoch_hook(cfg)).objectives()
    except UserError as exc:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # the sweeper records this trial as failed and carries on
        print(f"mnist_sweep: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # the sweeper stops the study cleanly
        print("mnist_sweep: interrupted; the MLflow run is marked KILLED, its logged epochs kept.", file=sys.stderr)
        sys.exit(130)


# Hydra checks its own command-line flags inside hydra.main and raises a bare ValueError (a traceback) when they
# clash; each such message, and what to type instead.
HYDRA_FLAG_ERRORS = {
    "Only one of --run, --multirun, --cfg": "To see a sweep's config, drop -m: `python -m mnist_sweep --cfg job "
    "hydra/sweeper=optuna` prints what every trial starts from, `--cfg hydra -p hydra.sweeper` the search.",
    "The --resolve flag can only be used": "Add --cfg job (or --cfg all) to print the config resolved.",
}


def run() -> None:
    try:
        main()
    except ValueError as exc:
        advice = next((text for start, text in HYDRA_FLAG_ERRORS.items() if str(exc).startswith(start)), None)
        if advice is None:
            raise
        print(f"mnist_sweep: error: {exc}. {advice}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()

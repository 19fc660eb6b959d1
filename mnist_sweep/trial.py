"""This app's side of an Optuna sweep (the generic sweeper in `optuna_sweeper` knows nothing of MNIST):

- epoch_hook: a sweep trial (cfg.optuna is set) reports each epoch's validation accuracy to its trial, so the
  pruner can stop it;
- model_size: the sweeper's param_counter, the trial's parameters counted from its config alone, before any data
  is touched;
- export_found_model: the sweeper's exporter, the best trial's model as conf/model/found/<study>.yaml.

conf/hparams_search/mnist_family.yaml names the last two in hydra.sweeper.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from mnist_sweep.engine import EpochMetrics
from mnist_sweep.models import count_parameters
from mnist_sweep.tracking import override_key
from mnist_sweep.train import build_model


def epoch_hook(cfg: DictConfig) -> Callable[[EpochMetrics], None]:
    """mnist_sweep.train.train's on_epoch_end: a no-op for a single run, the trial's reporter in a sweep."""
    if cfg.get("optuna") is None:
        return lambda metrics: None
    # Imported here: a plain run should not import the sweeper, nor Optuna.
    from optuna_sweeper.job import TrialLink

    link = TrialLink.connect(cfg.optuna)
    return lambda metrics: link.report(metrics.epoch, metrics.val_acc)


def model_size(cfg: DictConfig) -> tuple[int, int | None]:
    """The sweeper's param_counter: (parameters of cfg.model, budget.max_params), with no data loaded."""
    return count_parameters(build_model(cfg.model)), cfg.budget.max_params


def export_found_model(cfg: DictConfig, best) -> Path:
    """The sweeper's exporter (best: optuna_sweeper.publish.BestTrial): the best trial's composed model node
    (knobs and net, interpolations kept) as <best.out_dir or the primary config dir's model/found>/<study>.yaml,
    which `model=found/<study>` loads."""
    model = OmegaConf.to_container(cfg.model, resolve=False)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", best.study_name)
    others = [o for o in best.overrides if not override_key(o).startswith("model")]
    model.update(
        {
            "name": f"found_{name}",
            "source": f"optuna study {best.study_name}, trial {best.number}",
            "declared_params": best.n_params,
        }
    )
    results = ", ".join(f"{k} {v:.5g}" for k, v in best.values.items())
    header = (
        f"# Found by the Optuna sweep {best.study_name!r}, trial {best.number}: {results}.\n"
        f"# This file holds the architecture. The trial also ran with: {' '.join(others) or '(nothing else)'}\n"
        f"# Retrain it exactly: python -m mnist_sweep model=found/{name} {' '.join(others)}\n"
    )
    path = (best.out_dir or primary_config_dir(cfg) / "model" / "found") / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(model, sort_keys=False))
    return path


def primary_config_dir(cfg: DictConfig) -> Path:
    for source in cfg.hydra.runtime.config_sources:
        if source.provider == "main" and source.schema == "file":
            return Path(source.path)
    return Path(cfg.hydra.sweep.dir)

"""This app's side of an Optuna sweep (the generic sweeper in `optuna_sweeper` knows nothing of MNIST):

- epoch_hook: a sweep trial (cfg.optuna is set) reports each epoch's validation accuracy to its trial, so the
  pruner can stop it;
- model_size: the sweeper's param_counter, the trial's parameters counted from its config alone, before any data
  is touched;
- export_found_recipe: the sweeper's exporter, the winner's whole recipe as an experiment preset in the launch
  directory (found_configs/experiment/found/<study>.yaml).

conf/hparams_search/mnist_family.yaml names the last two in hydra.sweeper.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from mnist_sweep.engine import EpochMetrics
from mnist_sweep.models import count_parameters
from mnist_sweep.train import build_model, measure


def epoch_hook(cfg: DictConfig, epochs: int | None = None) -> Callable[[EpochMetrics], None]:
    """mnist_sweep.train.train's on_epoch_end: a no-op for a single run, the trial's reporter in a sweep.
    epochs: the run's length (default trainer.epochs): its last epoch is reported but never pruned."""
    if cfg.get("optuna") is None:
        return lambda metrics: None
    # Imported here: a plain run should not import the sweeper, nor Optuna.
    from optuna_sweeper.job import TrialLink

    link = TrialLink.connect(cfg.optuna)
    epochs = cfg.trainer.epochs if epochs is None else epochs
    return lambda metrics: link.report(metrics.epoch, metrics.val_acc, last=metrics.epoch >= epochs)


def model_size(cfg: DictConfig) -> tuple[int, int | None, dict[str, tuple[int, int | None]]]:
    """The sweeper's param_counter: (parameters of cfg.model, budget.max_params, {"macs": (multiply-adds per
    image, budget.max_macs)}), with no data loaded. MACs set a trial's training time: budgeting them keeps a
    sweep's trials within a known cost."""
    model = build_model(cfg.model)
    macs = measure(model, cfg.model.name).total_mult_adds
    return count_parameters(model), cfg.budget.max_params, {"macs": (int(macs), cfg.budget.get("max_macs"))}


FOUND_DIR = "found_configs"  # in the launch directory; hydra_plugins/mnist_sweep_found puts it on the search path
NOT_RECIPE = ("optuna", "hydra", "tracking", "hparams_search", "trainer.progress")  # sweep plumbing, not recipe


def export_found_recipe(cfg: DictConfig, best) -> Path:
    """The sweeper's exporter (best: optuna_sweeper.publish.BestTrial): the winner's whole recipe (architecture,
    optimizer, schedule, augmentation, epochs: every override it trained with but the sweep's plumbing) as an
    experiment preset, <launch dir>/found_configs/experiment/found/<study>.yaml (or under best.out_dir), which
    `python -m mnist_sweep experiment=found/<study>` loads from the launch directory. Never into the package."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", best.study_name)
    # Every app group as the trial composed it, not only those its overrides name: a search config may choose one
    # in its own defaults (hparams_search/fashion_mnist picks dataset=fashion_mnist), and the sweep's plumbing
    # (hparams_search) is left out below, so without this the preset would retrain on the app's default dataset.
    choices = {
        group: choice
        for group, choice in cfg.hydra.runtime.choices.items()
        if choice is not None and not group.startswith(NOT_RECIPE) and group != "experiment"
    }
    values = OmegaConf.create({})
    for override in OverridesParser.create().parse_overrides(best.overrides):
        key = override.key_or_group
        if key.startswith(NOT_RECIPE):
            continue
        if key in choices:
            choices[key] = override.value()
        else:
            OmegaConf.update(values, key, override.value(), merge=False, force_add=True)
    defaults = [{f"override /{group}": choice} for group, choice in choices.items()]
    preset = {"defaults": defaults, **OmegaConf.to_container(values)}
    preset.setdefault("model", {})
    preset["model"].update({"name": f"found_{name}", "source": f"optuna study {best.study_name}, trial {best.number}"})
    path = (Path(best.out_dir) if best.out_dir else Path.cwd() / FOUND_DIR) / "experiment" / "found" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(found_header(best, name) + yaml.safe_dump(preset, sort_keys=False, default_flow_style=None))
    return path


def found_header(best, name: str) -> str:
    if best.final:
        figures = ", ".join(f"{k} {mean:.5g} ± {sd:.2g}" for k, (mean, sd) in best.final.items())
        result = f"stage 2, over seeds {best.seeds}: {figures}"
        again = f"python -m mnist_sweep -m experiment=found/{name} seed={','.join(map(str, best.seeds))}"
    else:
        result = "stage 1: " + ", ".join(f"{k} {v:.5g}" for k, v in best.values.items())
        again = f"python -m mnist_sweep experiment=found/{name}"
    return (
        "# @package _global_\n"
        f"# Found by the Optuna sweep {best.study_name!r}, trial {best.number} ({best.n_params} params); {result}.\n"
        f"# The whole recipe it trained with. Reproduce it from this directory: {again}\n"
    )

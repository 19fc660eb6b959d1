"""The sweeper's config schema, registered in Hydra's ConfigStore: hydra/sweeper=optuna and its groups
hydra/sweeper/sampler, hydra/sweeper/pruner and hydra/sweeper/search_space."""


from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

SEARCH_SPACE_DIR = Path(__file__).parent / "search_spaces"


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 8
    # Parallel workers see each other's running trials as provisional "bad" results instead of re-sampling them.
    constant_liar: bool = True


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class CmaEsSamplerConf:
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    n_startup_trials: int = 1
    warn_independent_sampling: bool = False  # categorical knobs always go to the independent sampler


@dataclass
class NSGAIISamplerConf:
    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: int | None = None
    population_size: int = 16


@dataclass
class GPSamplerConf:
    _target_: str = "optuna.samplers.GPSampler"
    seed: int | None = None
    n_startup_trials: int = 8


@dataclass
class QMCSamplerConf:
    _target_: str = "optuna.samplers.QMCSampler"
    seed: int | None = None
    qmc_type: str = "sobol"
    scramble: bool = True


@dataclass
class GridSamplerConf:
    # search_space is filled in by the sweeper from hydra.sweeper.params (choices and ranges only).
    _target_: str = "optuna.samplers.GridSampler"
    seed: int | None = None


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConf:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 3  # trials that finish before any pruning, so the median means something
    n_warmup_steps: int = 2  # steps are epochs from 1: never prune on epoch 1, where every network is still warming up
    interval_steps: int = 1


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"  # epochs; "auto" takes it from the first finished trial
    reduction_factor: int = 3


@dataclass
class SuccessiveHalvingPrunerConf:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = 1
    reduction_factor: int = 3
    min_early_stopping_rate: int = 0


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.mnist_sweep_optuna.sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sweeper instantiates sampler and pruner itself (the job needs the pruner config)
    # _self_ first: the chosen search_space then fills params and warm_start over these empty defaults.
    defaults: list[Any] = field(
        default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": "median"}, {"search_space": "mnist_family"}]
    )
    sampler: Any = MISSING
    pruner: Any = MISSING
    direction: Any = "maximize"  # or a list, one per objective: [maximize, minimize]
    objectives: list[str] = field(default_factory=lambda: ["val_acc", "n_params"])  # the first len(direction)
    study_name: str | None = None  # None: <app>-<direction>-<objective>..., stable across re-runs
    # A journal file (safe for several processes on one machine) relative to the launch directory, or a database
    # URL: sqlite:///..., postgresql://user:pw@host/db.
    storage: str = "optuna_journal.log"
    n_trials: int = 20  # trials the study should hold: a re-run or a second worker continues up to this number
    # Processes working on the study: the command itself plus n_workers-1 copies it starts (docs/sweeps.md,
    # "Parallel workers": on 2 cores two 1-thread workers beat one 2-thread worker). 1: this process only.
    n_workers: int = 2
    n_jobs: int = 1  # trials handed to the launcher at once (use with a parallel launcher such as joblib)
    max_failure_rate: float = 0.5  # stop once more than this fraction of n_trials failed in this sweep
    params: dict[str, Any] = field(default_factory=dict)
    custom_search_space: str | None = None  # "module.function"(cfg, trial) -> dict of extra overrides or None
    warm_start: list[Any] = field(default_factory=list)  # dicts of param values, enqueued as the first trials
    param_counter: str | None = "mnist_sweep.trial.model_size"  # "module.function"(cfg) -> (n_params, max_params)
    mlflow: bool = True  # parent run per sweep, nested child run per trial (when the app has a `tracking` node)
    found_model_dir: str | None = None  # None: <primary config dir>/model/found
    rejected_value: float = 0.0  # objective value an over-budget trial is told (n_params gets the real count)
    # Set by the sweeper on the workers it starts, never by hand: the worker's number (0: the command the user
    # typed) and the MLflow sweep run its trial runs nest under.
    worker_id: int = 0
    parent_run_id: str | None = None


SAMPLERS = {"tpe": TPESamplerConf, "random": RandomSamplerConf, "cmaes": CmaEsSamplerConf,
            "nsgaii": NSGAIISamplerConf, "gp": GPSamplerConf, "qmc": QMCSamplerConf, "grid": GridSamplerConf}
PRUNERS = {"none": NopPrunerConf, "median": MedianPrunerConf, "hyperband": HyperbandPrunerConf,
           "successive_halving": SuccessiveHalvingPrunerConf}  # fmt: skip


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="mnist_sweep_optuna")
    for name, node in SAMPLERS.items():
        cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider="mnist_sweep_optuna")
    for name, node in PRUNERS.items():
        cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider="mnist_sweep_optuna")
    # A search space sets params (and warm_start) of the sweeper, so it is stored at package hydra.sweeper.
    for path in sorted(SEARCH_SPACE_DIR.glob("*.yaml")):
        cs.store(group="hydra/sweeper/search_space", name=path.stem, node=OmegaConf.load(path),
                 package="hydra.sweeper", provider="mnist_sweep_optuna")  # fmt: skip
    cs.store(group="hydra/sweeper/search_space", name="none", node={}, package="hydra.sweeper",
             provider="mnist_sweep_optuna")  # fmt: skip

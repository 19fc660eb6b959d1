"""The sweeper's config schema, registered in Hydra's ConfigStore: hydra/sweeper=optuna and its groups
hydra/sweeper/sampler and hydra/sweeper/pruner. Imports nothing heavy: Hydra loads it on every app start."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 8
    # Parallel workers see each other's running trials as provisional "bad" results instead of re-sampling them.
    constant_liar: bool = True
    multivariate: bool = False  # model the params jointly (Optuna calls it experimental; the sweeper hushes that)
    group: bool = False  # with multivariate: one model per set of params that occur together (define-by-run spaces)


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
class FinalistsConf:
    """Stage 2: the top_k trials of stage 1, retrained with `overrides` on top of theirs, once per seed."""

    top_k: int = 2  # 0: no stage 2 (the sweep ends with stage 1, as hydra-optuna-sweeper does)
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    seed_key: str = "seed"  # the app's config key for the random seed
    overrides: list[str] = field(default_factory=list)  # e.g. the full schedule, where stage 1 trains a short one
    report: list[str] = field(default_factory=list)  # other returned numbers shown as mean ± sd, e.g. [test_acc]
    # Also retrain the best n warm-start trials that trained to the end, where the top_k leave them out: the designs a
    # user queued by hand are then the baselines stage 2 measures the found ones against, under the same protocol.
    warm_start: int = 0


@dataclass
class OptunaSweeperConf:
    """The keys of the released hydra-optuna-sweeper keep their meaning (the plugin says so at start-up where one
    works differently); the rest are this sweeper's."""

    _target_: str = "hydra_plugins.optuna_sweeper.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sweeper instantiates sampler and pruner itself (the job needs the pruner config)
    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": "median"}])
    sampler: Any = MISSING
    pruner: Any = MISSING
    direction: Any = "maximize"  # or a list, one per objective: [maximize, minimize]
    objectives: list[str] = field(default_factory=lambda: ["val_acc", "n_params"])  # the first len(direction)
    study_name: str | None = None  # None: <app>-<direction>_<objective>..., stable across re-runs
    # A journal file (safe for several processes on one machine) relative to the launch directory, or a database
    # URL: sqlite:///..., postgresql://user:pw@host/db. None: the default journal file.
    storage: str | None = "optuna_journal.log"
    n_trials: int = 20  # trials the study should hold: a re-run or a second worker continues up to this number
    # Minutes after the command starts past which no stage-1 trial starts (trials already running finish, then stage
    # 2 retrains the finalists in full): a search sized to the time at hand rather than to a count. None: no limit.
    stage_one_minutes: float | None = None
    # Processes working on the study: the command itself plus n_workers-1 copies it starts. None: 2 (on 2 cores
    # two 1-thread workers beat one 2-thread worker, README "Parallel workers"), or 1 when n_jobs is given.
    n_workers: int | None = None
    n_jobs: int | None = None  # trials handed to the launcher at once (a parallel launcher such as joblib); None: 1
    max_failure_rate: float = 0.5  # stop once more than this fraction of n_trials failed in this sweep command
    params: dict[str, Any] = field(default_factory=dict)
    custom_search_space: str | None = None  # "module.function"(cfg, trial) -> dict of extra overrides or None
    warm_start: list[Any] = field(default_factory=list)  # dicts of param values, enqueued as the first trials
    # "module.function"(cfg, entry) -> entry: each warm-start entry passes through it before it is queued (cfg: the
    # app config with the search's fixed params), e.g. to fit a seed to the sweep's budget. None: queued as written.
    warm_start_adapter: str | None = None
    # With no params declared, the app's config hparams_search/<this> is searched (as if +hparams_search=<this>
    # had been typed), when the app has one; declared params are searched alone.
    default_hparams_search: str | None = "default"
    # "module.function"(cfg) -> (n_params, max_params or None): over-budget trials are rejected untrained.
    param_counter: str | None = None
    # "module.function"(cfg, best) -> path: writes the best trial (cfg: its composed config, best: its number,
    # values, overrides, n_params and out_dir) in a form the app loads, e.g. a model config. best_trial.yaml in the
    # sweep dir is written either way.
    exporter: str | None = None
    export_dir: str | None = None  # given to the exporter as out_dir (None: the app chooses)
    finalists: FinalistsConf = field(default_factory=FinalistsConf)
    # One line per finished trial across all workers on the console; Hydra's launch lines and the jobs' INFO logs
    # go to the log files only (launches.log in the sweep dir, each job's own log). false: Hydra's usual output.
    progress: bool = True
    mlflow: bool = True  # parent run per sweep, nested child run per trial (when the app has a `tracking` node)
    rejected_value: float = 0.0  # objective value an over-budget trial is told (n_params gets the real count)
    # This command's number among sweep commands that share one study (a job array's task id): with a seeded
    # sampler, worker process k of command c draws from seed + k + SEEDS_PER_COMMAND * c, so that commands given
    # the same overrides do not repeat each other's draws (slurm/sweep_workers.sbatch sets it).
    command_index: int = 0
    # Set by the sweeper on the workers it starts, never by hand: the worker's number (0: the command the user
    # typed), the sweep command's id, the MLflow sweep run its trial runs nest under, and the command's stage-1
    # deadline (unix time, from stage_one_minutes: every worker stops at the same moment, whenever it started).
    worker_id: int = 0
    sweep_id: str | None = None
    parent_run_id: str | None = None
    stage_one_deadline: float | None = None


SAMPLERS = {
    "tpe": TPESamplerConf,
    "random": RandomSamplerConf,
    "cmaes": CmaEsSamplerConf,
    "nsgaii": NSGAIISamplerConf,
    "gp": GPSamplerConf,
    "qmc": QMCSamplerConf,
    "grid": GridSamplerConf,
}
PRUNERS = {
    "none": NopPrunerConf,
    "median": MedianPrunerConf,
    "hyperband": HyperbandPrunerConf,
    "successive_halving": SuccessiveHalvingPrunerConf,
}


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="optuna_sweeper")
    for name, node in SAMPLERS.items():
        cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider="optuna_sweeper")
    for name, node in PRUNERS.items():
        cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider="optuna_sweeper")

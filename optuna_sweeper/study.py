"""The study's lifecycle: open it with its sampler, check the pruner, queue the warm start, and requeue trials
that were interrupted or whose worker died."""

from __future__ import annotations

import logging
import os
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from optuna_sweeper.errors import SweepError, one_line
from optuna_sweeper.optuna_api import set_metric_names, storage_of, trial_id
from optuna_sweeper.outcomes import DEFINING, Attr
from optuna_sweeper.settings import Resolved, pid_on_this_host
from optuna_sweeper.space import SearchSpace, encode_param, grid_of, override_text, parse_line
from optuna_sweeper.storage import open_storage, redact

log = logging.getLogger(__name__)


def is_grid(sampler_cfg: DictConfig) -> bool:
    return str(sampler_cfg._target_).endswith("GridSampler")


def open_study(run: Resolved, sampler_cfg: DictConfig, space: SearchSpace) -> optuna.Study:
    storage = open_storage(run.storage_url)
    study = optuna.create_study(
        storage=storage,
        study_name=run.study_name,
        sampler=make_sampler(sampler_cfg, space, run.seed_stream),
        directions=run.directions,
        load_if_exists=True,
    )
    if not run.is_worker and study.metric_names != run.objectives:
        set_metric_names(study, run.objectives)  # optuna-dashboard labels its axes with them
    stored = [d.name.lower() for d in study.directions]
    if stored != run.directions:
        raise SweepError(
            f"Study {run.study_name!r} in {redact(run.storage_url)} optimises {stored}, but this sweep asks for "
            f"{run.directions}. Choose another hydra.sweeper.study_name for a different objective."
        )
    return study


def make_sampler(sampler_cfg: DictConfig, space: SearchSpace, seed_stream: int = 0) -> optuna.samplers.BaseSampler:
    """seed_stream: Resolved.seed_stream, what this process adds to the sampler's seed."""
    extra: dict[str, Any] = {"search_space": grid_of(space)} if is_grid(sampler_cfg) else {}
    seed = sampler_cfg.get("seed")
    if seed is not None and seed_stream > 0:
        # Every worker process builds its own sampler: with one seed, all would draw the same params (two workers
        # of a seeded random sweep trained every draw twice, and so did a job array's tasks, each one command).
        # Worker k of command c draws from seed + k + 1000 c; the first command's own process keeps the seed, so a
        # one-process sweep draws as before.
        extra["seed"] = int(seed) + seed_stream
    try:
        with warnings.catch_warnings():  # TPE's multivariate/group: "experimental" since Optuna 2.2, and relied on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return instantiate(sampler_cfg, **extra)
    except Exception as exc:
        raise SweepError(f"Cannot create the sampler {sampler_cfg._target_}: {one_line(exc)}") from None


def pruner_config(pruner_cfg: DictConfig, directions: list[str]) -> dict | None:
    """The pruner travels to each job as config (jobs may run in other processes); none when it can't act:
    Optuna prunes single-objective studies only."""
    as_dict = OmegaConf.to_container(pruner_cfg)
    if len(directions) > 1 or as_dict["_target_"].endswith("NopPruner"):
        return None
    try:
        instantiate(as_dict)
    except Exception as exc:
        raise SweepError(f"Cannot create the pruner {as_dict['_target_']}: {one_line(exc)}") from None
    return as_dict


def enqueue_warm_start(
    study: optuna.Study,
    warm_start: Any,
    space: SearchSpace,
    custom_space: Any = None,
    app_config: Any = None,
    adapter: Any = None,
) -> None:
    """custom_space (define-by-run) suggests params of its own: an entry may name them too (passed to Optuna as
    they are: its suggest_* call takes the queued value). Which names it asks for is found by a dry run of the
    function on the entry, in a throwaway in-memory study. adapter(app_config, entry) -> entry, when given, rewrites
    each entry first (hydra.sweeper.warm_start_adapter)."""
    for index, entry in enumerate(warm_start or []):
        params = OmegaConf.to_container(entry) if OmegaConf.is_config(entry) else dict(entry)
        params = without_fixed(index, params, space)
        encoded = checked_entry(index, params, space, custom_space, app_config)  # as written: a typo is named first
        if adapter is not None:
            try:
                params = dict(adapter(app_config, params))
            except Exception as exc:
                raise SweepError(
                    f"hydra.sweeper.warm_start_adapter failed on warm-start entry {index} ({params}): {one_line(exc)}"
                ) from None
            encoded = checked_entry(index, params, space, custom_space, app_config)
        # skip_if_exists: a re-run of the same command does not queue the seeds again.
        study.enqueue_trial(encoded, user_attrs={Attr.WARM_START: index}, skip_if_exists=True)


def without_fixed(index: int, params: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """The entry without the keys the search fixes at the entry's own values: every trial gets those anyway. So a
    search that pins part of a space (the seeds' recipe, say) can inherit the warm start of the search it extends.
    A key fixed at another value is refused: the seed would not run as written."""
    kept = {}
    for key, value in params.items():
        if key not in space.fixed:
            kept[key] = value
            continue
        written = parse_line(f"{key}={override_text(value)}").get_value_element_as_str()
        if written != space.fixed[key]:
            raise SweepError(
                f"hydra.sweeper.warm_start[{index}] sets {key}={written}, but hydra.sweeper.params fixes "
                f"{key}={space.fixed[key]} for every trial, so the entry would not run as written. Drop the key "
                "from the entry, fix the param at the entry's value, or search it."
            )
    return kept


def checked_entry(
    index: int, params: dict[str, Any], space: SearchSpace, custom_space: Any, app_config: Any
) -> dict[str, Any]:
    """The entry as Optuna stores it; a key that is no searched param is refused."""
    encoded = {k: encode_param(space.distributions[k], v) if k in space.distributions else v for k, v in params.items()}
    unknown = sorted(set(params) - set(space.distributions) - asked_by(custom_space, app_config, space, encoded))
    if unknown:
        raise SweepError(
            f"hydra.sweeper.warm_start[{index}] sets {unknown}, which are not searched params. Warm-start "
            f"entries may only name keys of hydra.sweeper.params that are sweeps: {sorted(space.distributions)}, "
            "or the params a hydra.sweeper.custom_search_space suggests for this entry (a define-by-run space may "
            "ask for a param only under another's value: name that one too)."
        )
    return encoded


def asked_by(custom_space: Any, app_config: Any, space: SearchSpace, params: dict[str, Any]) -> set[str]:
    """The params custom_space suggests for a trial queued with these values (none without a custom space)."""
    if custom_space is None:
        return set()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line per entry
    try:
        dry = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
        dry.enqueue_trial(params)
        # As in a real trial, the declared params are suggested first (the queued values where the entry names
        # them): a custom space may read them, e.g. trial.params["width"].
        trial = dry.ask(fixed_distributions=space.distributions)
        with warnings.catch_warnings():
            # Only the names are wanted here. A value out of a distribution's range ("Fixed parameter ... is out of
            # range") is often the entry as written, before the warm_start_adapter fits it: every default sweep
            # printed five such warnings for widths it then queued in range. The real trial still warns of a
            # value that is out of range as queued.
            warnings.simplefilter("ignore", UserWarning)
            custom_space(app_config, trial)
    except Exception as exc:
        raise SweepError(
            f"hydra.sweeper.custom_search_space failed on warm-start entry {params}: {one_line(exc)}"
        ) from None
    finally:
        optuna.logging.set_verbosity(verbosity)
    return set(trial.params)


def requeue(study: optuna.Study, trial: optuna.Trial | optuna.trial.FrozenTrial) -> None:
    """Mark the trial interrupted (FAIL) and queue its params again, so a later trial redoes it."""
    # Through the storage: the trial may belong to a worker that is gone, so this process holds no Trial for it.
    storage_of(study).set_trial_user_attr(trial_id(trial), Attr.INTERRUPTED, True)
    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    defining = {k: trial.user_attrs[k] for k in DEFINING if k in trial.user_attrs}
    study.enqueue_trial(trial.params, user_attrs={Attr.RETRY_OF: trial.number, **defining})


# The study attr holding stage 1's deadline (unix time; hydra.sweeper.stage_one_minutes) for every command on it.
STAGE_ONE_DEADLINE = "stage_one_deadline"


def shared_deadline(study: optuna.Study, own: float) -> float:
    """Stage 1's deadline for a command that starts on this study with stage_one_minutes: the one another command
    recorded (a sibling task of a SLURM job array, a second host), while it is still ahead, so that they all stop
    together; else the command's own (from its start), recorded for the others. A command run again after the
    deadline passed so gets a fresh one. Two commands starting within the same second may each keep their own."""
    recorded = study.user_attrs.get(STAGE_ONE_DEADLINE)
    if isinstance(recorded, (int, float)) and recorded > time.time():
        return float(recorded)
    study.set_user_attr(STAGE_ONE_DEADLINE, own)
    return own


# A queued trial is named by the process that takes it one storage write after it turns RUNNING (a new trial is
# named in the same write: optuna_api.ask_named). One that is still unnamed this long after it started was taken
# by a process killed in between: nobody will run it. Generous, so that clocks of hosts sharing a study may differ.
UNNAMED_AFTER_S = 60.0


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """A worker killed hard (kill -9, a closed terminal) leaves RUNNING trials; on this host we can tell whether
    their process is gone, and queue them again. Trials of live workers are left alone. Returns the numbers of the
    trials recovered."""
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(Attr.WORKER)
        if worker is None and seconds_since(trial.datetime_start) > UNNAMED_AFTER_S:
            log.warning("trial %d was taken by a process that died before naming itself: queued again", trial.number)
        elif worker is None or worker_alive(worker):
            continue
        else:
            log.warning("trial %d was left running by a dead worker (%s): queued again", trial.number, worker)
        requeue(study, trial)
        recovered.append(trial.number)
    return recovered


def seconds_since(moment: datetime | None) -> float:
    if moment is None:
        return 0.0
    return (datetime.now(moment.tzinfo) - moment).total_seconds()  # naive (RDB) or aware (journal), as stored


def worker_alive(worker: str) -> bool:
    """Whether the process named host:pid may still run: on another host we cannot tell, so we assume it does."""
    pid = pid_on_this_host(worker)
    return pid is None or process_alive(pid)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited, only its parent (e.g. this sweep, for its own worker) has not reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: the signal test above is all we know


def grid_exhausted(study: optuna.Study) -> bool:
    sampler = study.sampler
    return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)

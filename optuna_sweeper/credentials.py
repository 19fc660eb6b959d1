"""Passwords stay out of everything a sweep writes.

A URL with a password in it (a study storage such as postgresql://user:pw@host/db, an MLflow server as
http://user:pw@host:5000) would otherwise reach every trial's Hydra files (overrides.yaml, hydra.yaml, config.yaml),
its launch line, its MLflow params and its config artifact, where everyone who can read the tracking server reads
it. So before anything is recorded the sweep takes the password out of every URL in its settings, its overrides and
the app's config, and hands it over the way each engine reads it from the environment: PGPASSWORD for PostgreSQL
(libpq, which psycopg uses), MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD for an MLflow server with basic
auth. The worker processes and trial jobs the sweep starts inherit the environment; what is written names the user
and host only. Never typing the password is better still: ~/.pgpass (or PGPASSFILE) and those variables work with
URLs that hold none (README, "Storage, resume, study names").
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import unquote

from hydra.core.override_parser.types import Transformer
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from optuna_sweeper.errors import SweepError
from optuna_sweeper.space import override_key

# scheme://user:password@ : a URL's password may not hold '/', '@' or whitespace unencoded (RFC 3986), nor quotes
# here, since overrides quote their values.
URL_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<user>[^:@/\s'\"]*):(?P<password>[^@/\s'\"]*)@")
POSTGRES = ("postgresql", "postgres")


def take_passwords(texts: list[str], env: dict[str, str]) -> list[str]:
    """texts with every URL password taken out; env gets the environment variables that carry them instead. A
    password the environment cannot carry (another database's URL), or two different ones for one variable, is
    refused: the sweep would have to write it down."""

    def take(match: re.Match) -> str:
        scheme, user = match["scheme"], match["user"]
        for key, value in variables_for(scheme, unquote(user), unquote(match["password"])).items():
            if env.setdefault(key, value) != value:
                hint = (
                    "put one line per server in ~/.pgpass (host:port:database:user:password, chmod 600), or "
                    "PGPASSFILE pointing to one"
                    if key == "PGPASSWORD"
                    else "one MLflow server per sweep, its credentials in MLFLOW_TRACKING_USERNAME/PASSWORD"
                )
                raise SweepError(f"Two different passwords would both need {key}. Keep them out of the URLs: {hint}.")
        # PostgreSQL keeps its user (libpq pairs it with PGPASSWORD or ~/.pgpass); MLflow reads both from the env.
        return f"{scheme}://{user}@" if base_scheme(scheme) in POSTGRES else f"{scheme}://"

    return [URL_PASSWORD.sub(take, text) for text in texts]


def base_scheme(scheme: str) -> str:
    """postgresql+psycopg -> postgresql: the database, whatever the driver."""
    return scheme.split("+")[0].lower()


def variables_for(scheme: str, user: str, password: str) -> dict[str, str]:
    base = base_scheme(scheme)
    if base in POSTGRES:
        return {"PGPASSWORD": password}
    if base in ("http", "https"):
        return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
    raise SweepError(
        f"A {scheme}:// URL in this sweep's settings or overrides holds a password, which every trial's config, "
        "log and MLflow params would record. Take it out of the URL and give it the way the database's client "
        "reads it (an option file or environment variable of its own); PostgreSQL's PGPASSWORD or ~/.pgpass and "
        "MLflow's MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD are taken care of when given in a URL."
    )


def export(env: dict[str, str]) -> None:
    """Put the passwords where this process's clients, and the processes it starts, look for them."""
    for key, value in env.items():
        current = os.environ.get(key)
        if current is not None and current != value:
            raise SweepError(
                f"A URL of this sweep holds a password, and {key} in the environment holds another one. Keep one: "
                f"drop the password from the URL (then {key} is used), or unset {key}."
            )
        os.environ[key] = value


def keep_passwords_out(settings: DictConfig, config: DictConfig, arguments: list[str]) -> tuple[list[str], list[str]]:
    """Takes the passwords out of the sweep's storage setting, the Hydra config its jobs are composed from (the
    command line's overrides, which every job composes again), the app config's values and the sweep's arguments;
    exports them (export). Returns (the arguments without passwords, the overrides that changed: a worker process
    gets these instead of its command line's). A password written in a config file is overridden for every job
    by the same value without it."""
    env: dict[str, str] = {}
    hydra_lines = [str(line) for line in config.hydra.overrides.hydra]
    task_lines = [str(line) for line in config.hydra.overrides.task]
    storage = settings.storage or ""
    [clean_storage] = take_passwords([storage], env)
    clean_hydra, clean_task = take_passwords(hydra_lines, env), take_passwords(task_lines, env)
    clean_arguments = take_passwords(arguments, env)
    clean_values = clean_app_values(config, env)
    tracking_env = os.environ.get("MLFLOW_TRACKING_URI", "")
    [clean_tracking_env] = take_passwords([tracking_env], env)
    if not env:
        return arguments, []
    export(env)
    if clean_tracking_env != tracking_env:  # the sweeper hands the tracking URI on to every job as an override
        os.environ["MLFLOW_TRACKING_URI"] = clean_tracking_env
    if clean_storage != storage and not any(override_key(line) == STORAGE_KEY for line in hydra_lines):
        clean_hydra.append(f"{STORAGE_KEY}={quoted(clean_storage)}")  # it came from a config file
    given = {override_key(line) for line in clean_arguments}
    clean_arguments += [f"{key}={quoted(value)}" for key, value in clean_values.items() if key not in given]
    with read_write(config), open_dict(config):
        config.hydra.overrides.hydra = clean_hydra
        config.hydra.overrides.task = clean_task
        if clean_storage != storage:
            config.hydra.sweeper.storage = clean_storage
    with open_dict(settings):
        settings.storage = clean_storage or settings.storage
    pairs = zip(hydra_lines + task_lines, clean_hydra + clean_task, strict=False)
    return clean_arguments, [clean for raw, clean in pairs if raw != clean]


STORAGE_KEY = "hydra.sweeper.storage"


def clean_app_values(config: DictConfig, env: dict[str, str]) -> dict[str, str]:
    """The app config's values that hold a URL password, taken out in place: {dotted key: value without it}. Literal
    values first; a value that still resolves to a password after them (an interpolation of an environment
    variable, say) is replaced by its clean value too, while one that only pointed at a cleaned value is left as
    it is."""
    cleaned: dict[str, str] = {}
    for literal_only in (True, False):
        for key, raw, resolved in string_values(config):
            if URL_PASSWORD.search(resolved) and not (literal_only and "${" in raw):
                [cleaned[key]] = take_passwords([resolved], env)
                with read_write(config), open_dict(config):
                    OmegaConf.update(config, key, cleaned[key], merge=False)
    return cleaned


def quoted(value: str) -> str:
    """An override's value, quoted so that Hydra reads ':' and '/' as they are."""
    return f"'{value}'" if "'" not in value else Transformer.str(value)


def string_values(config: DictConfig) -> list[tuple[str, str, str]]:
    """(dotted key, value as written, resolved value) of every string in the app's config (not the hydra node)."""
    found = []

    def walk(node: Any, prefix: str) -> None:
        for key in node if isinstance(node, dict) else range(len(node)):
            path = f"{prefix}{key}"
            value = node[key]
            if isinstance(value, dict | list):
                walk(value, path + ".")
            elif isinstance(value, str):
                resolved = OmegaConf.select(config, path, throw_on_resolution_failure=False)
                if isinstance(resolved, str):
                    found.append((path, value, resolved))

    walk({k: v for k, v in OmegaConf.to_container(config, resolve=False).items() if k != "hydra"}, "")
    return found

"""Puts ./found_configs (in the directory a command runs from) on mnist_sweep's config search path, so that
`python -m mnist_sweep experiment=found/<study>` loads the recipe a sweep exported there (mnist_sweep.trial.
export_found_recipe) with no hydra.searchpath to type, while the sweep never writes into the package's conf/.

A search-path plugin rather than a `hydra.searchpath` entry in conf/config.yaml: Hydra warns on every run where
a listed directory does not exist, and most runs have no found_configs yet. Hydra loads every plugin in
hydra_plugins for every app, so this one acts only when the primary config dir is mnist_sweep's own."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

FOUND_DIR = "found_configs"  # mnist_sweep.trial.FOUND_DIR (not imported: a plugin must load fast and alone)


def app_conf_dir() -> Path | None:
    spec = importlib.util.find_spec("mnist_sweep")
    return Path(spec.origin).resolve().parent.parent / "conf" if spec and spec.origin else None


class FoundConfigsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        found = Path.cwd() / FOUND_DIR
        conf = app_conf_dir()
        if conf is None or not found.is_dir():
            return
        mains = [Path(e.path.removeprefix("file://")).resolve() for e in search_path.get_path() if e.provider == "main"]
        if conf in mains:
            search_path.append(provider="mnist_sweep-found", path=f"file://{found}")

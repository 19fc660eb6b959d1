"""The structure the code promises: dependencies run one way (the app configures the generic sweeper, the sweeper
knows nothing of the app), and a single run imports neither the sweeper nor Optuna, nor anything heavy for --help."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from .helpers import REPO


def imports(path) -> list[tuple[str, bool]]:
    """(module imported, whether at module level) for every import in a file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, id(node) in top))
    return found


def package_imports(package: str) -> list[tuple[str, str, bool]]:
    return [(str(p.relative_to(REPO)), m, top) for p in sorted((REPO / package).rglob("*.py")) for m, top in imports(p)]


def test_the_sweeper_and_its_plugin_know_nothing_of_the_app():
    # hydra_plugins/mnist_sweep_found is the app's own (search-path) plugin; the sweeper's is optuna_sweeper.
    for package in ("optuna_sweeper", "hydra_plugins/optuna_sweeper"):
        offending = [(f, m) for f, m, _ in package_imports(package) if m.split(".")[0] == "mnist_sweep"]
        assert not offending, offending
    assert "mnist_sweep" not in (REPO / "hydra_plugins/optuna_sweeper/config.py").read_text()


def test_the_app_uses_the_sweeper_only_inside_a_sweep_trial():
    entries = package_imports("mnist_sweep")
    assert not [(f, m) for f, m, _ in entries if m.startswith("hydra_plugins")]
    at_top = [(f, m) for f, m, top in entries if top and m.split(".")[0] in ("optuna", "optuna_sweeper")]
    assert not at_top, at_top


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        # torchvision only to download the data (mnist_sweep.sources), matplotlib only to draw a figure
        (
            "import mnist_sweep.train, mnist_sweep.trial, mnist_sweep.tracking",
            ("optuna", "optuna_sweeper", "torchvision", "matplotlib"),
        ),
        ("import hydra_plugins.optuna_sweeper.optuna_sweeper", ("optuna", "optuna_sweeper", "mnist_sweep")),
        ("import mnist_sweep.__main__", ("optuna", "torch", "mlflow", "matplotlib")),
        ("import optuna_sweeper.sweep", ("mlflow", "matplotlib", "torch", "mnist_sweep")),  # MLflow only when on
    ],
)
def test_what_is_not_imported(code, absent):
    check = f"{code}; import sys; print([m for m in {absent!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_help_imports_nothing_heavy():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mnist_sweep", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0 and "model:" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert not imported & {"optuna", "torch", "mlflow", "matplotlib", "torchvision"}

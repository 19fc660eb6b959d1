"""Every config group option composes; bad overrides are refused with one clear paragraph and a non-zero exit."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from mnist_sweep.config import validate
from mnist_sweep.errors import UserError
from mnist_sweep.train import build, build_schedule

from .conftest import CONF, compose_config, run_cli

GROUPS = ["model", "optimizer", "scheduler", "augmentation", "dataset", "experiment"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes_and_resolves(group, option):
    cfg = compose_config(f"{group}={option}")
    OmegaConf.resolve(cfg)
    validate(cfg)


@pytest.mark.parametrize("name", [p.stem for p in sorted((CONF / "optimizer").glob("*.yaml"))])
def test_optimizers_build(name):
    import torch

    cfg = compose_config(f"optimizer={name}")
    opt = build(cfg.optimizer, "optimizer", [torch.nn.Parameter(torch.zeros(3))])
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize("name", [p.stem for p in sorted((CONF / "scheduler").glob("*.yaml"))])
def test_schedulers_build_and_step(name):
    import torch

    cfg = compose_config(f"scheduler={name}", "trainer.epochs=2")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    schedule = build_schedule(cfg.scheduler, opt, steps_per_epoch=4)
    for _ in range(2):
        for _ in range(4):
            opt.step()
            schedule.after_batch()
        schedule.after_epoch(val_loss=1.0)


def test_onecycle_peaks_at_the_optimizer_lr():
    cfg = compose_config("optimizer.lr=0.2")
    assert cfg.scheduler.build.max_lr == 0.2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.epochs=0", "trainer.epochs"),
        ("model.dropout=1.0", "model.dropout"),
        ("trainer.label_smoothing=1.5", "label_smoothing"),
        ("optimizer.lr=-0.1", "optimizer.lr"),
        ("trainer.amp=fp8", "trainer.amp"),
    ],
)
def test_validate_reports_bad_values(override, message):
    with pytest.raises(UserError, match=message):
        validate(compose_config(override))


def test_bad_constructor_value_becomes_a_user_error():
    cfg = compose_config("augmentation=affine", "augmentation.steps.0.degrees=-3")
    with pytest.raises(UserError, match="augmentation"):
        build(cfg.augmentation, "augmentation")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["optimizer.lr=-0.1"], "optimizer.lr must be > 0"),
        (["model.dropout=1.0"], "model.dropout must be in [0, 1)"),
        (["budget.max_params=5000"], "over budget.max_params=5,000"),
        (["dataset.root=/nonexistent", "dataset.download=false"], "files not found"),
    ],
)
def test_cli_refuses_bad_input_in_one_paragraph(tmp_path, args, expected):
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("mnist_sweep: error:")]
    assert len(error_lines) == 1 and expected in error_lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "mlflow.db").exists()  # refused before any MLflow run was made


def test_cli_unknown_option_is_hydras_error(tmp_path):
    done = run_cli("optimizer=rmsprop", cwd=tmp_path)
    assert done.returncode != 0
    assert "Could not find 'optimizer/rmsprop'" in done.stderr

"""Every config group option composes; bad overrides are refused with one clear paragraph and a non-zero exit."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from mnist_sweep.config import validate
from mnist_sweep.errors import UserError
from mnist_sweep.models import count_parameters
from mnist_sweep.train import build, build_model, build_schedule

from .helpers import CONF, compose_config, run_cli

GROUPS = ["model", "optimizer", "scheduler", "augmentation", "dataset", "experiment"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes_and_resolves(group, option):
    cfg = compose_config(f"{group}={option}")
    OmegaConf.resolve(cfg)
    validate(cfg)


def test_fashion18k_is_the_readmes_hand_net_and_recipe():
    """experiment=fashion18k composes the config of the README's 93 % Fashion-MNIST runs (its long command)."""
    cfg = compose_config("experiment=fashion18k")
    assert count_parameters(build_model(cfg.model)) == 18_544
    assert (cfg.dataset.name, cfg.trainer.epochs, cfg.trainer.tta_flip) == ("fashion_mnist", 40, True)
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.model.dropout) == (0.1, 5e-4, 0.0)
    assert [step._target_ for step in cfg.augmentation.steps] == ["mnist_sweep.augment.RandomHorizontalFlip"]


@pytest.mark.parametrize("name", [p.stem for p in sorted((CONF / "optimizer").glob("*.yaml"))])
def test_optimizers_build(name):
    import torch

    cfg = compose_config(f"optimizer={name}")
    opt = build(cfg.optimizer, "optimizer", [torch.nn.Parameter(torch.zeros(3))])
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr


def lr_after_each_epoch(name: str, epochs: int = 6, steps: int = 4) -> tuple[list[float], list[float], float]:
    """Build scheduler `name` over a 0.1-lr SGD, step it as training does with a flat validation loss, and return
    the lr after each epoch, the lr at every batch, and the optimizer's configured peak (optimizer.lr)."""
    import torch

    cfg = compose_config(f"scheduler={name}", f"trainer.epochs={epochs}")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    schedule = build_schedule(cfg.scheduler, opt, steps_per_epoch=steps)
    per_epoch, per_batch = [], []
    for _ in range(epochs):
        for _ in range(steps):
            per_batch.append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.after_batch()
        schedule.after_epoch(val_loss=1.0)
        per_epoch.append(opt.param_groups[0]["lr"])
    return per_epoch, per_batch, cfg.optimizer.lr


def test_constant_and_step_schedules():
    assert lr_after_each_epoch("none")[0] == [0.1] * 6
    step = lr_after_each_epoch("step")[0]  # gamma 0.1 every 5 epochs
    assert step[:4] == [0.1] * 4 and step[4:] == pytest.approx([0.01, 0.01])


def test_cosine_decays_to_its_floor_at_the_last_epoch():
    lrs = lr_after_each_epoch("cosine")[0]
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False)) and lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_plateau_cuts_the_lr_once_the_val_loss_stalls_past_its_patience():
    lrs = lr_after_each_epoch("plateau")[0]  # patience 3: epochs 2-5 stall, so the cut comes after epoch 5
    assert lrs[:4] == [0.1] * 4 and lrs[4:] == pytest.approx([0.01, 0.01])


def test_onecycle_warms_up_to_the_optimizer_lr_per_batch_then_anneals():
    _, per_batch, peak = lr_after_each_epoch("onecycle")
    top = per_batch.index(max(per_batch))
    assert max(per_batch) == pytest.approx(peak, rel=0.05) and 0 < top < len(per_batch) - 1
    assert per_batch[0] == pytest.approx(peak / 10) and per_batch[-1] < per_batch[0]


def test_onecycle_peaks_at_the_optimizer_lr():
    cfg = compose_config("optimizer.lr=0.2")
    assert cfg.scheduler.build.max_lr == 0.2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.epochs=0", "trainer.epochs"),
        ("model.dropout=1.0", "model.dropout"),
        ("trainer.label_smoothing=1.5", "label_smoothing"),
        ("trainer.epoch_fraction=1.5", "epoch_fraction"),
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
        (["scheduler.interval=week"], "scheduler.interval must be batch or epoch"),
        (["tracking.tracking_uri=http://127.0.0.1:9"], "tracking server at http://127.0.0.1:9 does not answer"),
        (["hydra.run.dir=/proc/no/such/dir"], "hydra.run.dir=/proc/no/such/dir cannot be created"),
        (["-m", "hydra.sweep.dir=/proc/no/such/dir", "seed=1,2"], "hydra.sweep.dir=/proc/no/such/dir cannot be"),
    ],
)
def test_cli_refuses_bad_input_in_one_paragraph(tmp_path, args, expected):
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("mnist_sweep: error:")]
    assert len(error_lines) == 1 and expected in error_lines[0]
    assert "Traceback" not in done.stderr and not (tmp_path / "mlflow.db").exists()  # nothing recorded
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "mlflow.db").exists()  # refused before any MLflow run was made


def test_cli_unknown_option_is_hydras_error(tmp_path):
    done = run_cli("optimizer=rmsprop", cwd=tmp_path)
    assert done.returncode != 0
    assert "Could not find 'optimizer/rmsprop'" in done.stderr

"""End to end on a slice of real MNIST: the CLI run, what MLflow holds afterwards, and run states on failure."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from mnist_sweep.data import load_data
from mnist_sweep.engine import normalise, predict
from mnist_sweep.models import PLAIN, EvalViews
from mnist_sweep.train import build_model, summary_text, train

from .helpers import compose_config, run_cli

pytestmark = pytest.mark.slow  # every test here starts a subprocess that trains or sweeps

SMOKE = ["trainer.epochs=1", "dataset.train_limit=2000", "trainer.batch_size=32"]
EPOCH_METRICS = {"train_loss", "train_acc", "val_loss", "val_acc", "lr"}
FINAL_METRICS = {"best_val_acc", "test_acc", "n_params", "epochs_run", "train_seconds", "images_per_second"}
ARTIFACTS = {
    "config.yaml",
    "model_summary.txt",
    "checkpoints/best.pt",
    "plots/training_curves.png",
    "plots/confusion_matrix.png",
    "plots/misclassified.png",
}


def list_artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= list_artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, mnist_root):
    """One real run through `python -m mnist_sweep`, launched in an empty directory like a user would."""
    workdir = tmp_path_factory.mktemp("launch")
    done = run_cli(*SMOKE, f"dataset.root={mnist_root}", "seed=3", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mnist_sweep").experiment_id])
    return workdir, done.stdout + done.stderr, client, run


def test_summary_names_model_accuracy_time_and_run(cli_run):
    _, stdout, _, run = cli_run
    for label in ("model", "parameters", "best val accuracy", "test accuracy", "wall time", "MLflow run", "fixed cost"):
        assert label in stdout
    assert "7,788" in stdout and run.info.run_id in stdout
    assert "mirror" not in stdout  # said only of a run that evaluates with it (trainer.tta_flip)


def test_the_run_logs_where_its_wall_time_went(cli_run):
    """The phases (mnist_sweep.train.Stopwatch) cover the run: they add up to its wall time in train()."""
    _, _, _, run = cli_run
    m = run.data.metrics
    phases = {"setup", "data", "mlflow_start", "training", "validation", "test", "figures", "checkpoint"}
    assert {f"seconds_{p}" for p in phases} <= set(m)
    assert all(m[f"seconds_{p}"] >= 0 for p in phases) and m["seconds_training"] > 0 and m["seconds_validation"] > 0
    assert sum(m[f"seconds_{p}"] for p in phases) == pytest.approx(m["wall_seconds"], rel=0.02, abs=0.05)


def test_run_names_its_dataset_recipe_and_experiment_kind_and_prints_no_warning(cli_run, mnist_root):
    workdir, output, client, run = cli_run
    (given,) = run.inputs.dataset_inputs
    assert given.dataset.name == "mnist" and len(given.dataset.digest) == 8
    # Its public address, not a folder other hosts reading a tracking server do not have.
    assert given.dataset.source_type == "http" and mnist_root not in given.dataset.source
    sizes = {t.key: t.value for t in given.tags if t.key.endswith("_images")}
    assert sizes == {"train_images": "2000", "val_images": "5000", "test_images": "10000"}
    assert run.data.tags["recipe"] == "defaults"
    assert run.data.tags["overrides"] == " ".join([*SMOKE, f"dataset.root={mnist_root}"])  # not seed=3
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert f"runs/{run.info.run_id}?workflowType=machine_learning" in output
    assert "Warning" not in output  # e.g. torch.export's, which a user reads as a fault

    table = subprocess.run(
        [sys.executable, "-m", "mnist_sweep.results"], cwd=workdir, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert table[1].endswith("defaults " + " ".join([*SMOKE, f"dataset.root={mnist_root}"]))


def test_mlflow_db_and_artifacts_land_in_the_launch_directory(cli_run):
    workdir, _, _, run = cli_run
    assert (workdir / "mlflow.db").exists()
    assert run.info.artifact_uri.startswith((workdir / "mlruns").as_uri()) or str(workdir / "mlruns") in (
        run.info.artifact_uri
    )


def test_run_holds_params_metrics_and_learns(cli_run):
    _, _, client, run = cli_run
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model_name"] == "gap8k" and params["n_params"] == "7788"
    assert params["trainer.epochs"] == "1" and params["optimizer._target_"] == "torch.optim.SGD"
    assert params["model.net.blocks.0.out_ch"] == "8"
    assert set(run.data.metrics) >= EPOCH_METRICS | FINAL_METRICS
    assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 1
    # learning happens: one epoch on 2k images is far above the 10% of chance
    assert run.data.metrics["best_val_acc"] > 0.5 and run.data.metrics["test_acc"] > 0.5


def test_artifacts_are_logged_and_the_model_loads_back(cli_run):
    _, _, client, run = cli_run
    assert list_artifacts(client, run.info.run_id) >= ARTIFACTS
    mlflow.set_tracking_uri(client.tracking_uri)
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    state = torch.load(client.download_artifacts(run.info.run_id, "checkpoints/best.pt"), weights_only=True)
    assert all(torch.equal(state[k].cpu(), v.cpu()) for k, v in model.state_dict().items())
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(("exception", "status"), [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_interrupted_or_crashed_run_is_never_left_running(tmp_path, mnist_root, exception, status):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config(*SMOKE, f"dataset.root={mnist_root}", f"tracking.tracking_uri={uri}", "trainer.epochs=2")

    def crash(metrics):
        raise exception

    with pytest.raises(type(exception)):
        train(cfg, tmp_path / "out", on_epoch_end=crash)
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("mnist_sweep").experiment_id])
    assert run.info.status == status
    assert mlflow.active_run() is None


def test_sigterm_marks_the_run_killed_and_keeps_its_epochs(tmp_path, mnist_root):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnist_sweep", *SMOKE, "trainer.epochs=50", f"dataset.root={mnist_root}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for line in proc.stdout:
        if "epoch 1:" in line:
            break
    proc.terminate()
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130 and "marked KILLED" in output
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mnist_sweep").experiment_id])
    assert run.info.status == "KILLED"
    assert len(client.get_metric_history(run.info.run_id, "val_acc")) >= 1


# Each process opens the launch directory's fresh sqlite store the way a run does (tracking.use_experiment).
OPEN_STORE = """
from omegaconf import OmegaConf
from mnist_sweep import tracking
tracking.use_experiment(OmegaConf.create({"tracking": {"tracking_uri": None, "experiment": "mnist_sweep"}}))
"""


def test_runs_started_together_in_a_fresh_directory_share_one_store(tmp_path):
    """Two single runs launched at once used to race to create mlflow.db's tables ("table experiments already
    exists" in the second); now one creates them while the others wait."""
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_STORE], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [e.name for e in client.search_experiments()].count("mnist_sweep") == 1
    assert not [p for p in tmp_path.iterdir() if p.name != "mlflow.db"]  # no lock file left behind


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        (["trainer.tta_flip=true"], "over 2 views: the image, its mirror (trainer.tta_*)"),
        (
            ["trainer.tta_rotations=[-7,-3.5,3.5,7]", "trainer.tta_shift=1"],
            "over 9 views: the image, turned by -7, -3.5, +3.5, +7 degrees, moved 1 pixel each way (trainer.tta_*)",
        ),
    ],
    ids=["mirror", "rotations and shifts"],
)
def test_test_time_views_test_the_chosen_checkpoint(tmp_path, mnist_root, overrides, said):
    """trainer.tta_*: the one test evaluation averages each image's logits over its views, on the checkpoint
    validation chose; with the image alone the same checkpoint scores differently. The logged MLflow model (a
    torch.export program) averages the same views: loaded back, it scores the run's test accuracy."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config(*SMOKE, f"dataset.root={mnist_root}", f"tracking.tracking_uri={uri}", *overrides)
    result = train(cfg, tmp_path)
    assert said in summary_text(result, 1.0)
    model = build_model(cfg.model)
    model.load_state_dict(torch.load(tmp_path / "best.pt", weights_only=True))
    data = load_data(cfg.dataset, torch.device("cpu"))
    accuracy = {
        tta: (predict(model, data.test, data.mean, data.std, 2048, views=v).argmax(1) == data.test.labels)
        .float()
        .mean()
        .item()
        for tta, v in ((False, PLAIN), (True, EvalViews.of(cfg.trainer)))
    }
    assert result.test_acc == pytest.approx(accuracy[True], abs=1e-6)
    assert accuracy[True] != accuracy[False]
    mlflow.set_tracking_uri(uri)
    assert mlflow.get_run(result.run_id).data.metrics["eval_views"] == EvalViews.of(cfg.trainer).count
    served = mlflow.pytorch.load_model(f"runs:/{result.run_id}/model")
    with torch.no_grad():
        served_preds = served(normalise(data.test.images, data.mean, data.std).contiguous()).argmax(1)
    assert (served_preds == data.test.labels).float().mean().item() == pytest.approx(result.test_acc, abs=1e-6)

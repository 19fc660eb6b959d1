"""Knowledge distillation: the loss mixes the labels with the teacher's softened predictions, the teacher sees each
augmented batch and is never trained, and only a teacher whose run trained on the student's split is accepted."""

from __future__ import annotations

import mlflow
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from mnist_sweep.config import TrainerConfig
from mnist_sweep.distill import distillation_loss, load_teacher
from mnist_sweep.engine import LRSchedule, fit, normalise
from mnist_sweep.errors import UserError
from mnist_sweep.tracking import log_checkpoint

from .test_engine import toy_data, toy_model


def test_the_loss_is_the_labels_plus_the_teachers_softened_predictions():
    torch.manual_seed(0)
    logits, teacher, labels = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    hard = F.cross_entropy(logits, labels)
    # KL(teacher || student) at temperature 2, averaged over the batch, times T²
    p = F.softmax(teacher / 2, dim=1)
    soft = (p * (p.log() - F.log_softmax(logits / 2, dim=1))).sum(1).mean() * 4
    assert torch.allclose(distillation_loss(logits, teacher, labels, 0.25, 2.0), 0.75 * hard + 0.25 * soft)
    # a student that already predicts as the teacher pays only its share of the labels' term
    assert torch.allclose(distillation_loss(logits, logits, labels, 0.5, 4.0), 0.5 * hard, atol=1e-6)


class Recorder(torch.nn.Module):
    """A teacher that says class 1 for every image and remembers what it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0
        self.weight = torch.nn.Parameter(torch.zeros(1))  # a parameter that must never change

    def forward(self, x):
        self.seen += len(x)
        return torch.tensor([[-5.0, 5.0]]).expand(len(x), 2) + self.weight


def test_the_teacher_sees_every_training_batch_and_pulls_the_student_towards_it():
    def train(teacher):
        model = toy_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        schedule = LRSchedule(torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0), "epoch")
        settings = TrainerConfig(epochs=2, batch_size=32, progress=False, distill_weight=1.0, distill_temperature=1.0)
        fit(model, toy_data(), optimizer, schedule, None, settings, teacher=teacher)
        return model

    teacher = Recorder()
    student = train(teacher)
    assert teacher.seen == 2 * 256 and teacher.weight.grad is None and teacher.weight.item() == 0.0
    # all of the loss from a teacher that always says "bright": the student learns to say so too, labels or not
    data = toy_data()
    student.eval()
    with torch.no_grad():
        said = student(normalise(data.val.images, data.mean, data.std)).argmax(1)
    assert said.float().mean() > 0.9


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


def logged_teacher(tmp_path, split_seed: int) -> str:
    """A model logged as a run of this project logs it, with its dataset params."""
    with mlflow.start_run() as run:
        mlflow.log_params({"dataset.name": "mnist", "dataset.val_size": 5000, "dataset.split_seed": split_seed})
        model = toy_model().eval()
        log_checkpoint(model, tmp_path, as_mlflow_model=True)
    return f"runs:/{run.info.run_id}/model"


def student_cfg(uri: str, split_seed: int = 0):
    return OmegaConf.create(
        {"dataset": {"name": "mnist", "val_size": 5000, "split_seed": split_seed}, "tracking": {"tracking_uri": uri}}
    )


def test_a_teacher_from_the_same_split_loads_and_predicts(store, tmp_path):
    uri = logged_teacher(tmp_path, split_seed=0)
    teacher = load_teacher(uri, student_cfg(store), torch.device("cpu"))
    x = torch.randn(4, 1, 28, 28)
    expected = toy_model().eval()(x)
    assert torch.allclose(teacher(x), expected, atol=1e-5)


def test_a_teacher_is_loaded_once_per_process_without_progress_bars(store, tmp_path, capfd):
    uri = logged_teacher(tmp_path, split_seed=0)
    capfd.readouterr()  # what logging the teacher printed
    first = load_teacher(uri, student_cfg(store), torch.device("cpu"))
    assert load_teacher(uri, student_cfg(store), torch.device("cpu")) is first  # the next sweep trial's
    assert "Downloading artifacts" not in capfd.readouterr().err
    with pytest.raises(UserError, match=r"dataset.split_seed=0 \(this run: 1\)"):  # the split is still checked
        load_teacher(uri, student_cfg(store, split_seed=1), torch.device("cpu"))


def test_a_teacher_from_another_split_is_refused(store, tmp_path):
    uri = logged_teacher(tmp_path, split_seed=1)
    with pytest.raises(UserError, match=r"dataset.split_seed=1 \(this run: 0\)"):
        load_teacher(uri, student_cfg(store), torch.device("cpu"))


def test_a_teacher_that_is_not_a_model_is_refused(store):
    with pytest.raises(UserError, match="is not a model this MLflow store can load"):
        load_teacher("runs:/0123456789abcdef/model", student_cfg(store), torch.device("cpu"))

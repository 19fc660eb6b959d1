"""The training loop on a tiny synthetic task (bright vs dark digits-sized images): it learns, keeps the best
validation epoch, stops early, and its weight average follows the weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnist_sweep.config import TrainerConfig
from mnist_sweep.data import Data, Split
from mnist_sweep.engine import LRSchedule, fit, normalise, predict
from mnist_sweep.models import PLAIN, ConvBlock, EvalViews, GAPHead, Net


def toy_data(n: int = 256) -> Data:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = (torch.rand(n, 1, 28, 28, generator=g) * 100 + labels.view(-1, 1, 1, 1) * 120).to(torch.uint8)
    split = Split(images, labels)
    return Data(train=split, val=split, test=split, classes=["dark", "bright"], mean=0.3, std=0.2)


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return Net([ConvBlock(1, 4, dropout=0.05), GAPHead(4, num_classes=2)])


def train(settings: TrainerConfig, model: nn.Module | None = None, on_epoch_end=lambda m: None):
    model = model or toy_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = LRSchedule(torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0), "epoch")
    return model, fit(model, toy_data(), optimizer, schedule, None, settings, on_epoch_end)


def test_learns_and_keeps_the_best_validation_epoch():
    seen = []
    _, result = train(TrainerConfig(epochs=4, batch_size=32, progress=False), on_epoch_end=seen.append)
    assert [m.epoch for m in seen] == [1, 2, 3, 4]
    assert result.best_val_acc == max(m.val_acc for m in seen) > 0.9
    assert result.best_epoch == next(m.epoch for m in seen if m.val_acc == result.best_val_acc)
    assert result.images_per_second > 0


def test_best_state_reproduces_the_best_validation_accuracy():
    model, result = train(TrainerConfig(epochs=3, batch_size=32, progress=False))
    model.load_state_dict(result.best_state)
    data = toy_data()
    acc = (predict(model, data.val, data.mean, data.std, 64).argmax(1) == data.val.labels).float().mean().item()
    assert acc == result.best_val_acc


def test_tta_flip_averages_the_logits_of_each_image_and_its_mirror():
    model, data = toy_model().eval(), toy_data()
    # a left-right asymmetric input, so that the mirror's logits differ from the image's
    images = data.val.images.clone()
    images[..., :14] //= 2
    split, mirrored = Split(images, data.val.labels), Split(images.flip(-1), data.val.labels)
    plain = predict(model, split, data.mean, data.std, 64)
    mirror = predict(model, mirrored, data.mean, data.std, 64)
    assert not torch.allclose(plain, mirror)
    both = predict(model, split, data.mean, data.std, 64, views=EvalViews(mirror=True))
    torch.testing.assert_close(both, (plain + mirror) / 2)


def test_rotated_and_shifted_views_average_the_logits_of_each_view():
    """trainer.tta_rotations / tta_shift: the logits are the mean over the image, each rotation and the four
    shifts. A quarter turn samples pixel centres exactly, so it is torch.rot90; a shift by one pixel repeats the
    edge row or column it uncovers."""
    model, data = toy_model().eval(), toy_data()
    images = data.val.images.clone()
    images[..., :14] //= 2  # no symmetry, so that every view's logits differ
    x = normalise(images, data.mean, data.std)
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    shifted = [padded[..., 1 + dy : 29 + dy, 1 + dx : 29 + dx] for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
    with torch.no_grad():
        logits = [model(v) for v in (x, torch.rot90(x, -1, (-2, -1)), *shifted)]
        assert not torch.allclose(logits[0], logits[1])
        views = EvalViews(rotations=(90.0,), shift=1)
        averaged = predict(model, Split(images, data.val.labels), data.mean, data.std, 64, views=views)
    torch.testing.assert_close(averaged, torch.stack(logits).mean(0), atol=1e-5, rtol=1e-5)
    assert views.count == 6 and PLAIN.count == 1
    assert views.describe() == "the image, turned by +90 degrees, moved 1 pixel each way"


def test_views_wrap_the_net_without_changing_its_state_dict():
    model = toy_model()
    wrapped = EvalViews(mirror=True, rotations=(-7.0, 7.0), shift=2).wrap(model)
    assert set(wrapped.state_dict()) == {f"net.{k}" for k in model.state_dict()}  # rotation angles not saved
    assert PLAIN.wrap(model) is model


def test_test_time_views_are_what_validation_judges():
    seen = []
    settings = TrainerConfig(epochs=2, batch_size=32, progress=False, tta_flip=True, tta_rotations=[5.0], tta_shift=1)
    model, _ = train(settings, on_epoch_end=seen.append)
    data = toy_data()
    loss = {
        tta: F.cross_entropy(predict(model, data.val, data.mean, data.std, 64, views=v), data.val.labels).item()
        for tta, v in ((False, PLAIN), (True, EvalViews.of(settings)))
    }
    assert loss[True] != loss[False]
    assert seen[-1].val_loss == pytest.approx(loss[True], rel=1e-5)  # the last epoch's weights are the model's


def test_patience_stops_training_early():
    # lr 0 never improves on epoch 1, so patience 2 stops after epoch 3
    model = toy_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    schedule = LRSchedule(torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0), "epoch")
    result = fit(model, toy_data(), optimizer, schedule, None, TrainerConfig(10, 32, patience=2, progress=False))
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1


def test_weight_average_with_no_memory_equals_the_weights():
    model, result = train(TrainerConfig(epochs=1, batch_size=32, progress=False, ema_decay=1e-9))
    assert all(torch.allclose(result.best_state[k].float(), v.float()) for k, v in model.state_dict().items())


def test_weight_average_is_what_gets_validated():
    plain_model, plain = train(TrainerConfig(epochs=2, batch_size=32, progress=False))
    _, averaged = train(TrainerConfig(epochs=2, batch_size=32, progress=False, ema_decay=0.9))
    weight = "0.0.weight"
    assert not torch.equal(averaged.best_state[weight], plain.best_state[weight])
    assert averaged.best_val_acc > 0.9


def test_epoch_fraction_trains_each_epoch_on_a_fresh_subset_and_the_schedule_follows():
    """trainer.epoch_fraction=0.25: each epoch is a quarter of the split's images (64 of 256, in 2 batches of
    32), a different quarter every epoch, and a per-batch schedule steps once per batch it trains."""
    data = toy_data()
    seen: list[torch.Tensor] = []
    model = toy_model()
    forward = model.forward
    model.forward = lambda x: (seen.append(x.detach().flatten(1)[:, :4].clone()), forward(x))[1]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = []
    schedule = LRSchedule(torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: steps.append(step) or 1), "batch")
    settings = TrainerConfig(epochs=2, batch_size=32, epoch_fraction=0.25, progress=False)
    result = fit(model, data, optimizer, schedule, None, settings)
    train_batches = [x for x in seen if len(x) == 32]  # evaluation runs in one batch of all 256
    assert len(train_batches) == 4 and steps[-1] == 4  # two batches per epoch, the schedule stepped after each
    assert result.train_images == 2 * 64
    first, second = torch.cat(train_batches[:2]), torch.cat(train_batches[2:])
    assert not torch.equal(first, second)  # a fresh draw each epoch


def test_epoch_fraction_one_trains_on_a_permutation_of_the_whole_split():
    """At 1 the loop draws the order it drew before the knob existed: one randperm of the whole split, batched in
    that order, so results recorded before it reproduce."""
    data = toy_data()
    model = toy_model()
    forward, seen = model.forward, []
    model.forward = lambda x: (seen.append(x.detach().clone()), forward(x))[1]
    state = torch.get_rng_state()
    order = torch.randperm(len(data.train))
    torch.set_rng_state(state)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = LRSchedule(torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0), "epoch")
    result = fit(model, data, optimizer, schedule, None, TrainerConfig(epochs=1, batch_size=32, progress=False))
    expected = normalise(data.train.images[order], data.mean, data.std)
    assert torch.equal(torch.cat(seen[:8]), expected)  # 8 training batches of 32, then the evaluation's one
    assert result.train_images == 256

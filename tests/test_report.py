"""The figures a run logs, drawn without training: the misclassified grid shows exactly the wrong test images, in
order, each under its true→predicted title."""

from __future__ import annotations

import torch

from mnist_sweep import report


def test_the_misclassified_grid_shows_each_wrong_image_under_its_title():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (200, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.arange(200) % 10
    preds = labels.clone()
    wrong = [3, 50, 51, 120, 199]
    preds[wrong] = (labels[wrong] + 1) % 10
    fig = report.misclassified_grid(images, labels, preds, limit=4)
    (ax,) = fig.axes
    mosaic = torch.as_tensor(ax.images[0].get_array().data)
    tiles = [mosaic[8 : 8 + 28, 4 + c * 36 : 4 + c * 36 + 28] for c in range(4)]  # row 0: 8 px gap above, 36 px steps
    for tile, i in zip(tiles, wrong[:4], strict=True):  # the first four, in test-set order
        assert torch.equal(tile, images[i, 0].float())
    assert [t.get_text() for t in ax.texts] == [f"{labels[i].item()}→{preds[i].item()}" for i in wrong[:4]]
    assert "first 4 of 5" in fig._suptitle.get_text()
    report.close(fig)


def test_no_misclassified_image_still_draws_a_figure():
    labels = torch.arange(10)
    fig = report.misclassified_grid(torch.zeros(10, 1, 28, 28, dtype=torch.uint8), labels, labels)
    assert "first 0 of 0" in fig._suptitle.get_text()
    report.close(fig)

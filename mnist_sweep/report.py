"""What a finished run shows a person: figures for MLflow and the summary table for the terminal.

matplotlib is imported when the first figure is drawn, not with this module: a sweep trial or `--help` that
draws nothing should not pay for it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from mnist_sweep.engine import EpochMetrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # runs are headless; never try to open a window
    import matplotlib.pyplot as plt

    return plt


def close(fig: Figure) -> None:
    pyplot().close(fig)


def training_curves(history: list[EpochMetrics], best_epoch: int) -> Figure:
    epochs = [m.epoch for m in history]
    fig, (ax_loss, ax_acc, ax_lr) = pyplot().subplots(1, 3, figsize=(14, 4))
    ax_loss.plot(epochs, [m.train_loss for m in history], label="train")
    ax_loss.plot(epochs, [m.val_loss for m in history], label="validation")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_acc.plot(epochs, [100 * m.train_acc for m in history], label="train (augmented)")
    ax_acc.plot(epochs, [100 * m.val_acc for m in history], label="validation")
    ax_acc.set(title="accuracy (%)", xlabel="epoch")
    ax_lr.plot(epochs, [m.lr for m in history])
    ax_lr.set(title="learning rate at epoch start", xlabel="epoch")
    for ax in (ax_loss, ax_acc):
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best val (epoch {best_epoch})")
        ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, classes: list[str]) -> Figure:
    k = len(classes)
    counts = torch.bincount(labels.cpu() * k + preds.cpu(), minlength=k * k).view(k, k)
    fig, ax = pyplot().subplots(figsize=(7, 6))
    ax.imshow(counts.log1p(), cmap="Blues")
    for i, j in torch.cartesian_prod(torch.arange(k), torch.arange(k)).tolist():
        colour = "white" if i == j else "black"
        ax.text(j, i, str(counts[i, j].item()), ha="center", va="center", fontsize=7, color=colour)
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true", title="test confusion matrix")
    ax.set_xticklabels(classes, rotation=90, fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    fig.tight_layout()
    return fig


def misclassified_grid(images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor, limit: int = 40) -> Figure:
    """The first `limit` misclassified test images, ten to a row, each titled true→predicted. One mosaic image on one
    pair of axes: forty axes of their own took 0.5 s to lay out and save, every run."""
    wrong = (preds != labels).nonzero().flatten()[:limit].cpu()
    cols, gap = 10, 8  # gap: pixels between tiles, room for each tile's title
    rows = max(1, -(-len(wrong) // cols))
    size = images.shape[-1]
    step = size + gap
    mosaic = torch.full((rows * step, cols * step), 110.0)  # grey between the tiles, which are black around the digit
    fig, ax = pyplot().subplots(figsize=(cols * 1.2, rows * 1.4))
    for n, i in enumerate(wrong.tolist()):
        row, col = divmod(n, cols)
        top, left = row * step + gap, col * step + gap // 2
        mosaic[top : top + size, left : left + size] = images[i, 0].cpu().float()
        title = f"{labels[i].item()}→{preds[i].item()}"
        ax.text(left + size / 2 - 0.5, top - 1.5, title, ha="center", va="bottom", fontsize=9, color="red")
    ax.imshow(mosaic, cmap="gray", interpolation="nearest", vmin=0, vmax=255)
    ax.axis("off")
    fig.suptitle(f"misclassified test images (true→predicted), first {len(wrong)} of {(preds != labels).sum().item()}")
    fig.tight_layout()
    return fig


def summary_table(rows: dict[str, str]) -> str:
    width = max(map(len, rows))
    line = "-" * (width + 3 + max(map(len, rows.values())))
    return "\n".join([line, *(f"{k:<{width}} : {v}" for k, v in rows.items()), line])

"""How long a run's figures take to draw and save as PNG, each alone, after matplotlib is imported (the run's own
path: figure, PNG, close): the training curves of 15 epochs, the confusion matrix and the misclassified grid, on
10,000 synthetic test predictions with 0.6 % wrong. Median of --repeats.

    python -m tests.bench_figures [--repeats 5]

A benchmark, not a test: figures vary from machine to machine (README, "Where the time goes", says where they came
from).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import torch

from mnist_sweep import report
from mnist_sweep.engine import EpochMetrics


def seconds(draw) -> float:
    start = time.perf_counter()
    fig = draw()
    fig.savefig(io.BytesIO(), format="png")
    report.close(fig)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10000, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (10000,), generator=g)
    preds = torch.where(torch.rand(10000, generator=g) < 0.006, (labels + 1) % 10, labels)
    history = [EpochMetrics(e, 0.1 / e, 0.9, 0.1 / e, 0.99, 0.05, 5.0) for e in range(1, 16)]
    figures = {
        "training curves": lambda: report.training_curves(history, 15),
        "confusion matrix": lambda: report.confusion_matrix(labels, preds, [str(c) for c in range(10)]),
        "misclassified grid": lambda: report.misclassified_grid(images, labels, preds),
    }
    seconds(figures["confusion matrix"])  # imports matplotlib and warms its PNG writer: not a figure's cost
    for name, draw in figures.items():
        print(f"{name:<20} {statistics.median(seconds(draw) for _ in range(repeats)):.3f} s")


if __name__ == "__main__":
    main()

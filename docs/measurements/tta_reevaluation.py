"""Validation (and test) accuracy of finished runs' checkpoints, evaluated as trained and with test-time views
(trainer.tta_flip / tta_rotations / tta_shift), to decide on validation whether the views help (README, "Found by
search": the mirror for Fashion-MNIST, rotations and shifts for digits). Each job is a Hydra job directory of a
run (its .hydra/config.yaml and best.pt, the validation-chosen checkpoint). Prints per run: seed, validation
plain / with the views, test plain / with the views, in %; then their means.

    python docs/measurements/tta_reevaluation.py --mirror multirun/*/*/[0-9]
    python docs/measurements/tta_reevaluation.py --rotations -7 -3.5 3.5 7 --shift 1 multirun/*/*/final_*
"""

import argparse

import torch
from omegaconf import OmegaConf

from mnist_sweep.data import load_data
from mnist_sweep.engine import predict
from mnist_sweep.models import PLAIN, EvalViews
from mnist_sweep.train import build_model


def accuracy(model, split, data, views: EvalViews) -> float:
    logits = predict(model, split, data.mean, data.std, 2048, views=views)
    return 100 * (logits.argmax(1) == split.labels).float().mean().item()


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("jobs", nargs="+", help="Hydra job directories of finished runs")
parser.add_argument("--mirror", action="store_true", help="the left-right mirror (trainer.tta_flip)")
parser.add_argument("--rotations", type=float, nargs="*", default=[], help="degrees (trainer.tta_rotations)")
parser.add_argument("--shift", type=int, default=0, help="pixels each way (trainer.tta_shift)")
args = parser.parse_args()
views = EvalViews(args.mirror, tuple(args.rotations), args.shift)
if views.count == 1:
    parser.error("no views beyond the image itself: give --mirror, --rotations or --shift")

rows = []
for job in args.jobs:
    cfg = OmegaConf.load(f"{job}/.hydra/config.yaml")
    data = load_data(cfg.dataset, torch.device("cpu"))
    model = build_model(cfg.model)
    model.load_state_dict(torch.load(f"{job}/best.pt", weights_only=True))
    rows.append([accuracy(model, split, data, v) for split in (data.val, data.test) for v in (PLAIN, views)])
    figures = rows[-1]
    print(f"{job} seed {cfg.seed}: val {figures[0]:.2f} / {figures[1]:.2f}, test {figures[2]:.2f} / {figures[3]:.2f}")
mean = [sum(column) / len(rows) for column in zip(*rows, strict=True)]
print(f"mean of {len(rows)} runs ({views.describe()}): ", end="")
print(f"val {mean[0]:.3f} / {mean[1]:.3f}, test {mean[2]:.3f} / {mean[3]:.3f}")

"""Validation (and test) accuracy of finished runs' checkpoints, evaluated as trained and with each image averaged
with its left-right mirror (trainer.tta_flip), to decide on validation whether the mirror helps (README, "Found by
search", Fashion-MNIST). Each argument is a Hydra job directory of a run (its .hydra/config.yaml and best.pt, the
validation-chosen checkpoint). Prints per run: seed, validation plain / mirrored, test plain / mirrored, in %.

    python docs/measurements/mirror_reevaluation.py multirun/*/*/[0-9]
"""

import sys

import torch
from omegaconf import OmegaConf

from mnist_sweep.data import load_data
from mnist_sweep.engine import predict
from mnist_sweep.train import build_model


def accuracy(model, split, data, tta_flip: bool) -> float:
    logits = predict(model, split, data.mean, data.std, 2048, tta_flip=tta_flip)
    return 100 * (logits.argmax(1) == split.labels).float().mean().item()


for job in sys.argv[1:]:
    cfg = OmegaConf.load(f"{job}/.hydra/config.yaml")
    data = load_data(cfg.dataset, torch.device("cpu"))
    model = build_model(cfg.model)
    model.load_state_dict(torch.load(f"{job}/best.pt", weights_only=True))
    figures = [accuracy(model, split, data, tta) for split in (data.val, data.test) for tta in (False, True)]
    print(f"seed {cfg.seed}: val {figures[0]:.2f} / {figures[1]:.2f}, test {figures[2]:.2f} / {figures[3]:.2f}")

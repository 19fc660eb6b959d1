"""A measurement, not part of the package: does one 3x3 conv applied several times with its weights shared (each
application followed by ReLU and a batch norm of its own) add accuracy per parameter at 4,000 parameters? Depth
without parameters lets the widths grow: found_configs/model/ holds gap8k's layout at 3,768-3,894 parameters with
its stage-2 convs 2-4 (or 2-5) one shared 14- or 16-wide conv, where the fitted gap8k at 4,000 is 8-12-10-10.
README, "Found by search", the 4,000 bullet, has the figures. From a copy of this folder (the run writes mlflow.db
and multirun/ where it starts; `found_configs/` is on the config path there, and `python -m` imports this module
from the current directory):

    cp -r docs/measurements/shared_conv /tmp/shared_conv && cd /tmp/shared_conv
    python -m mnist_sweep -m model=shared4k optimizer.lr=0.1 optimizer.weight_decay=1e-3 trainer.num_threads=1 \
        seed=2,3,4 tracking.log_model=false
"""

import torch
from torch import nn

from mnist_sweep.batchnorm import BatchNorm2d


class SharedConv(nn.Module):
    """One ch -> ch 3x3 conv (no bias) applied once per entry of paddings, each time with that padding, then ReLU
    and a BatchNorm of that application's own."""

    def __init__(self, ch: int, paddings: list[int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, bias=False)
        self.paddings = list(paddings)
        self.post = nn.ModuleList(nn.Sequential(nn.ReLU(inplace=True), BatchNorm2d(ch)) for _ in self.paddings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for padding, post in zip(self.paddings, self.post, strict=True):
            x = post(nn.functional.conv2d(x, self.conv.weight, padding=padding))
        return x

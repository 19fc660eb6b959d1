"""The random streams of a run (dropout masks, augmentation, shuffling, weight init) are the same whatever the thread
count; what differs between 1 and 2 threads is the order in which oneDNN sums gradients (README: Reliability)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .helpers import REPO

DRAWS = """
import hashlib, sys, torch
from mnist_sweep.augment import RandomAffine
from mnist_sweep.models import Dropout
from mnist_sweep.train import build_model, seed_everything
from tests.helpers import compose_config
torch.set_num_threads(int(sys.argv[1]))
seed_everything(5)
model = build_model(compose_config("model=gap8k").model)
dropout = Dropout(0.1).train()
draws = [
    *model.state_dict().values(),
    dropout(torch.ones(128, 8, 26, 26).contiguous(memory_format=torch.channels_last)),
    RandomAffine(degrees=18.0, translate=0.1, scale=(0.8, 1.2))(torch.rand(256, 1, 28, 28)),
    torch.randperm(55_000),
]
print(hashlib.sha256(b"".join(t.contiguous().numpy().tobytes() for t in draws)).hexdigest())
"""


@pytest.mark.slow
def test_random_streams_do_not_depend_on_the_thread_count():
    digests = [
        subprocess.run(
            [sys.executable, "-c", DRAWS, threads], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        for threads in ("1", "2")
    ]
    assert digests[0] == digests[1] and len(digests[0]) == 64

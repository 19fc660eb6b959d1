"""The bench's baseline (`python -m mnist_sweep.bench`, pipeline (b)): one epoch trained as the seed projects train,
torchvision's MNIST dataset with PIL transforms per image through a DataLoader, and the same net in torch's stock
layers (nn.BatchNorm2d, nn.Dropout) in contiguous NCHW. Nothing else in the project trains this way."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from mnist_sweep.data import locate
from mnist_sweep.models import with_torch_kernels


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer both of the bench's sides train with: plain SGD with momentum, the seeds' choice."""
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def seed_style_model(cfg, device: torch.device) -> torch.nn.Module:
    """The same net in torch's stock layers, NCHW, as a seed notebook builds it."""
    torch.manual_seed(0)
    return with_torch_kernels(instantiate(cfg.model.net)).to(device)


def seed_style_dataset(cfg, images: int) -> Subset:
    """torchvision.datasets.MNIST exactly as the seeds build it. It needs the extracted files beside the .gz, so
    the verified .gz files are linked into a scratch root and torchvision extracts them there (no network)."""
    folder = locate(cfg.dataset.name, cfg.dataset.root, list(cfg.dataset.extra_dirs), allow_download=False)
    scratch = Path(tempfile.mkdtemp(prefix="mnist_bench_")) / "MNIST" / "raw"
    scratch.mkdir(parents=True)
    for gz in folder.glob("*.gz"):
        (scratch / gz.name).symlink_to(gz.resolve())
    transform = transforms.Compose(
        [
            transforms.RandomRotation((-7.0, 7.0), fill=(1,)),
            transforms.ToTensor(),
            transforms.Normalize((0.1307,), (0.3081,)),
        ]
    )
    full = datasets.MNIST(str(scratch.parents[1]), train=True, download=True, transform=transform)
    return Subset(full, range(images))


def time_seed_style_epoch(cfg, dataset, batch_size: int, workers: int, device: torch.device) -> float:
    """Seconds to train a fresh seed-style model for one pass over dataset (workers: the DataLoader's)."""
    model = seed_style_model(cfg, device)
    optimizer = sgd(model)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    model.train()
    start = time.perf_counter()
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start

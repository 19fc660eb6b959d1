"""MNIST-family data, held as uint8 tensors on the training device.

torchvision supplies the file names, checksums, mirrors and downloader (mnist_sweep.sources holds its values, so
that a run that finds its files does not import torchvision); the IDX parsing is done here because torchvision's
reader only opens extracted files, and the shared data folders are read-only, so extracting next to the .gz files
is not an option.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from mnist_sweep.errors import DataError
from mnist_sweep.sources import CONTENT_SHA256, SOURCES, SPLIT_FILES

log = logging.getLogger(__name__)


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, 1, 28, 28]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class Data:
    train: Split
    val: Split
    test: Split
    classes: list[str]
    mean: float
    std: float
    name: str = ""  # dataset.name
    folder: Path | None = None  # where the files were read
    digest: str = ""  # of the decoded images and labels (content_digest), the same for a recompressed copy


def parse_idx(raw: bytes) -> torch.Tensor:
    """IDX format: two zero bytes, a type code (0x08 = uint8), the number of dims, big-endian int32 sizes."""
    if len(raw) < 4 or raw[0:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError("not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    payload = raw[4 + 4 * ndim :]
    if len(payload) != torch.Size(dims).numel():
        raise ValueError(f"IDX header says {dims} but holds {len(payload)} bytes")
    return torch.frombuffer(bytearray(payload), dtype=torch.uint8).view(*dims)


def candidate_dirs(name: str, root: str | Path, extra_dirs: list[str] = ()) -> list[Path]:
    """torchvision's layout (<root>/<Class>/raw) first, then a flat folder (as Debian's packages install)."""
    root = Path(root).expanduser()
    return [root / SOURCES[name].folder / "raw", root, *(Path(d).expanduser() for d in extra_dirs)]


def find_files(name: str, dirs: list[Path]) -> Path | None:
    """The first folder that holds all four files, as .gz or already extracted."""
    needed = [f for pair in SPLIT_FILES.values() for f in pair]
    for folder in dirs:
        if all((folder / f).exists() or (folder / f[:-3]).exists() for f in needed):
            return folder
    return None


def download(name: str, folder: Path) -> None:
    from torchvision.datasets.utils import download_url

    source = SOURCES[name]
    folder.mkdir(parents=True, exist_ok=True)
    for filename, md5 in source.md5.items():
        if (folder / filename).exists():
            continue
        errors = []
        for mirror in source.mirrors:
            try:
                download_url(f"{mirror}{filename}", str(folder), filename, md5)
                break
            except Exception as exc:  # urllib raises several unrelated types when offline
                errors.append(f"{mirror}: {exc}")
        else:
            raise OSError("; ".join(errors))


def read_file(path: Path, md5: str | None, content_sha256: str | None) -> torch.Tensor:
    """A .gz whose md5 is torchvision's is taken as it is. Any other copy (a recompressed .gz, such as Debian's
    Fashion-MNIST, or an extracted file) is judged by its content: the sha256 of the decompressed IDX bytes."""
    mismatch = ""
    if path.exists():
        raw = path.read_bytes()
        if md5 is not None and (actual_md5 := hashlib.md5(raw).hexdigest()) == md5:
            return parse_idx(gzip.decompress(raw))
        if md5 is not None:
            mismatch = f"its md5 is {actual_md5}, not torchvision's {md5}"
        try:
            where, content = path, gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(
                f"{path} is corrupt: it could not be decompressed ({exc}){'; ' + mismatch if mismatch else ''}. "
                "Delete it and run again with dataset.download=true, or copy an intact file there."
            ) from exc
    else:  # an extracted copy beside where the .gz would be
        where = path.with_suffix("")
        content = where.read_bytes()
    try:
        array = parse_idx(content)
    except ValueError as exc:
        raise DataError(
            f"{where} is not a complete IDX file ({exc}): it may be truncated. Replace it with an intact copy, or put "
            f"the original {path.name} beside it."
        ) from exc
    actual = hashlib.sha256(content).hexdigest() if content_sha256 is not None else None
    if actual != content_sha256 or (mismatch and content_sha256 is None):
        found = "; ".join(
            filter(None, [mismatch, actual and f"the sha256 of its IDX content is {actual}, not {content_sha256}"])
        )
        raise DataError(
            f"{where} is corrupt or not the canonical file: {found}. Delete it and run again with "
            "dataset.download=true, or copy an intact file there."
        )
    return array


def load_split(
    name: str,
    folder: Path,
    split: str,
    checksums: dict[str, str] | None = None,
    contents: dict[str, str] | None = None,
) -> Split:
    """checksums: file -> md5 of the .gz (torchvision's by default); contents: file -> sha256 of its IDX bytes."""
    checksums = SOURCES[name].md5 if checksums is None else checksums
    contents = CONTENT_SHA256[name] if contents is None else contents
    images_file, labels_file = SPLIT_FILES[split]
    images = read_file(folder / images_file, checksums.get(images_file), contents.get(images_file))
    labels = read_file(folder / labels_file, checksums.get(labels_file), contents.get(labels_file))
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} images but {len(labels)} labels in the {split} split.")
    return Split(images.unsqueeze(1).contiguous(), labels.long())


def locate(name: str, root: str, extra_dirs: list[str] = (), allow_download: bool = True) -> Path:
    dirs = candidate_dirs(name, root, extra_dirs)
    if (folder := find_files(name, dirs)) is not None:
        return folder
    target = dirs[0]
    files = ", ".join(f for pair in SPLIT_FILES.values() for f in pair)
    where = "; ".join(str(d) for d in dirs)
    if allow_download:
        try:
            download(name, target)
            return target
        except OSError as exc:
            reason = f"Downloading them into {target} failed ({exc})."
    else:
        reason = "Downloading is off (dataset.download=false)."
    raise DataError(
        f"{name} files not found: looked for {files} (as .gz or extracted) in {where}. {reason} "
        f"Copy the four files into {target}, or point dataset.root (or the MNIST_SWEEP_DATA environment "
        "variable) at a folder that holds them."
    )


def split_train_val(full: Split, val_size: int, split_seed: int, train_limit: int | None) -> tuple[Split, Split]:
    """Hold out a validation set fixed by split_seed, so every run and every trial is judged on the same images.
    train_limit keeps the first N remaining training images in file order (for smoke runs)."""
    if not 0 < val_size < len(full):
        raise DataError(f"dataset.val_size must be between 1 and {len(full) - 1}, got {val_size}.")
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = perm[:val_size], perm[val_size:].sort().values
    if train_limit is not None:
        if train_limit < 1:
            raise DataError(f"dataset.train_limit must be a positive number of images, got {train_limit}.")
        train_idx = train_idx[:train_limit]
    return Split(full.images[train_idx], full.labels[train_idx]), Split(full.images[val_idx], full.labels[val_idx])


def content_digest(name: str) -> str:
    """The dataset's digest: every file read was verified against torchvision's md5 or the pinned sha256 of its
    content, so the pins stand for the data without hashing 60 MB again on every run."""
    return hashlib.sha256("".join(CONTENT_SHA256[name][f] for f in sorted(CONTENT_SHA256[name])).encode()).hexdigest()


@functools.lru_cache(maxsize=4)
def read_verified(name: str, folder: Path, split: str) -> Split:
    """load_split, once per process: a sweep worker runs trial after trial in one process, and decompressing and
    verifying the files (~0.4 s) is a fixed cost every trial would otherwise pay again. The cached tensors are only
    ever indexed or copied (split_train_val, .to, .float()), never written in place."""
    log.info("reading %s from %s", name, folder)
    return load_split(name, folder, split)


def load_data(cfg, device: torch.device) -> Data:
    """cfg is the `dataset` config group."""
    if cfg.name not in SOURCES:
        raise DataError(f"dataset.name must be one of {sorted(SOURCES)}, got {cfg.name!r}.")
    folder = locate(cfg.name, cfg.root, list(cfg.get("extra_dirs") or []), cfg.download)
    full_train, test = read_verified(cfg.name, folder, "train"), read_verified(cfg.name, folder, "test")
    train, val = split_train_val(full_train, cfg.val_size, cfg.split_seed, cfg.train_limit)
    return Data(
        train.to(device),
        val.to(device),
        test.to(device),
        list(SOURCES[cfg.name].classes),
        cfg.mean,
        cfg.std,
        name=cfg.name,
        folder=folder,
        digest=content_digest(cfg.name),
    )

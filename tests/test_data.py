"""The data layer on tiny synthetic IDX files: layouts, checksums, missing files, the validation split."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import pytest
import torch

from mnist_sweep.data import Split, load_split, locate, parse_idx, split_train_val
from mnist_sweep.errors import DataError
from mnist_sweep.sources import SOURCES, SPLIT_FILES


def idx_bytes(array: torch.Tensor) -> bytes:
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.to(torch.uint8).numpy().tobytes()


def write_fake_dataset(folder: Path, n_train: int = 50, n_test: int = 20) -> dict[str, str]:
    """Four gzipped IDX files like MNIST's; returns their md5 checksums."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images_file, labels_file = SPLIT_FILES[split]
        arrays[images_file] = torch.randint(0, 256, (n, 28, 28), generator=g)
        arrays[labels_file] = torch.arange(n) % 10
    checksums = {}
    for name, array in arrays.items():
        data = gzip.compress(idx_bytes(array))
        (folder / name).write_bytes(data)
        checksums[name] = hashlib.md5(data).hexdigest()
    return checksums


def test_parse_idx_round_trip():
    array = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    assert torch.equal(parse_idx(idx_bytes(array)), array)


def test_parse_idx_rejects_truncated_payload():
    with pytest.raises(ValueError, match="IDX header"):
        parse_idx(idx_bytes(torch.zeros(3, 28, 28))[:-5])


def test_loads_torchvision_layout_with_checksums(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    checksums = write_fake_dataset(folder)
    assert locate("mnist", str(tmp_path), allow_download=False) == folder
    train = load_split("mnist", folder, "train", checksums)
    assert train.images.shape == (50, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_finds_flat_folder_and_extra_dirs(tmp_path):
    write_fake_dataset(tmp_path / "debian")
    found = locate("fashion_mnist", str(tmp_path / "nowhere"), [str(tmp_path / "debian")], allow_download=False)
    assert found == tmp_path / "debian"


def test_extracted_files_are_read_too(tmp_path):
    write_fake_dataset(tmp_path)
    for gz in tmp_path.glob("*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    folder = locate("mnist", str(tmp_path), allow_download=False)
    assert len(load_split("mnist", folder, "test", contents={})) == 20  # fake data: no content checksum to hold


def test_a_truncated_extracted_file_is_a_user_error(tmp_path):
    write_fake_dataset(tmp_path)
    for gz in tmp_path.glob("*.gz"):
        raw = gzip.decompress(gz.read_bytes())
        gz.with_suffix("").write_bytes(raw[: len(raw) // 2] if gz.name.startswith("t10k-images") else raw)
        gz.unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is not a complete IDX file"):
        load_split("mnist", locate("mnist", str(tmp_path), allow_download=False), "test")


def test_corrupt_file_fails_its_md5_check(tmp_path):
    checksums = write_fake_dataset(tmp_path)
    path = tmp_path / SPLIT_FILES["train"][0]
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataError, match=r"is corrupt: .*its md5 is [0-9a-f]{32}, not torchvision's"):
        load_split("mnist", tmp_path, "train", checksums, contents={})


def test_real_checksums_reject_fake_files(tmp_path):
    write_fake_dataset(tmp_path)
    with pytest.raises(DataError, match="md5"):
        load_split("mnist", tmp_path, "test")


def test_missing_files_are_named_with_their_folders(tmp_path):
    write_fake_dataset(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        locate("mnist", str(tmp_path), allow_download=False)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "dataset.download=false" in message


def test_split_is_fixed_by_seed_and_disjoint():
    full = Split(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), torch.arange(100))
    train_a, val_a = split_train_val(full, 10, split_seed=0, train_limit=None)
    train_b, val_b = split_train_val(full, 10, split_seed=0, train_limit=None)
    assert torch.equal(val_a.labels, val_b.labels)
    assert set(train_a.labels.tolist()).isdisjoint(val_a.labels.tolist())
    assert len(train_a) == 90
    _, val_c = split_train_val(full, 10, split_seed=1, train_limit=None)
    assert not torch.equal(val_a.labels, val_c.labels)


def test_train_limit_keeps_the_first_training_images_and_the_full_val_set():
    full = Split(torch.zeros(100, 1, 1, 1, dtype=torch.uint8), torch.arange(100))
    train, val = split_train_val(full, 10, split_seed=0, train_limit=5)
    assert len(train) == 5 and len(val) == 10
    assert train.labels.tolist() == sorted(train.labels.tolist())


@pytest.mark.parametrize(("val_size", "limit"), [(0, None), (100, None), (10, 0)])
def test_bad_split_sizes_are_user_errors(val_size, limit):
    full = Split(torch.zeros(100, 1, 1, 1, dtype=torch.uint8), torch.arange(100))
    with pytest.raises(DataError):
        split_train_val(full, val_size, 0, limit)


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_real_files_are_verified_by_content_so_a_recompressed_copy_passes_and_a_changed_one_fails(
    tmp_path, dataset, mnist_root
):
    """The canonical MNIST files, and Debian's recompressed Fashion-MNIST (apt-get install dataset-fashion-mnist)."""
    source = Path(mnist_root) / "MNIST" / "raw" if dataset == "mnist" else Path("/usr/share/datasets/fashion-mnist")
    if not source.exists():
        message = f"{source} is missing: apt-get install dataset-fashion-mnist"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)
    name = "t10k-labels-idx1-ubyte.gz"
    content = gzip.decompress((source / name).read_bytes())
    for label, data, expected in [
        ("as shipped", (source / name).read_bytes(), None),
        ("recompressed", gzip.compress(content, compresslevel=1, mtime=0), None),
        ("one label changed", gzip.compress(content[:-1] + bytes([(content[-1] + 1) % 10]), mtime=0), "sha256"),
    ]:
        folder = tmp_path / label.replace(" ", "_")
        folder.mkdir()
        for other in SPLIT_FILES["test"]:
            (folder / other).write_bytes(data if other == name else (source / other).read_bytes())
        if expected:
            with pytest.raises(DataError, match=f"not the canonical file: .*{expected}"):
                load_split(dataset, folder, "test")
        else:
            assert len(load_split(dataset, folder, "test")) == 10_000, label


def test_a_process_reads_the_files_once_and_every_run_gets_the_same_data(mnist_root):
    """A sweep worker runs trial after trial in one process: the second load_data reuses the verified files, and
    what a run did to its Data (training reads, normalises and augments it) leaves the next run's data unchanged."""
    from omegaconf import OmegaConf

    from mnist_sweep.data import load_data, read_verified
    from mnist_sweep.engine import normalise

    cfg = OmegaConf.create(
        {"name": "mnist", "root": mnist_root, "extra_dirs": [], "download": False, "val_size": 5000,
         "split_seed": 0, "train_limit": None, "mean": 0.1307, "std": 0.3081}
    )  # fmt: skip
    read_verified.cache_clear()
    first = load_data(cfg, torch.device("cpu"))
    expected = [s.images.clone() for s in (first.train, first.val, first.test)]
    normalise(first.train.images[:512], first.mean, first.std)  # what a training step does with the images
    normalise(first.test.images, first.mean, first.std)
    second = load_data(cfg, torch.device("cpu"))
    assert read_verified.cache_info().misses == 2 and read_verified.cache_info().hits == 2  # train and test, once
    for split, images in zip((second.train, second.val, second.test), expected, strict=True):
        assert torch.equal(split.images, images)


@pytest.mark.parametrize(("name", "cls"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_the_pinned_sources_are_torchvisions(name, cls):
    import torchvision.datasets

    source, dataset = SOURCES[name], getattr(torchvision.datasets, cls)
    assert source.folder == dataset.__name__
    assert source.md5 == dict(dataset.resources)
    assert list(source.classes) == dataset.classes
    assert list(source.mirrors) == dataset.mirrors

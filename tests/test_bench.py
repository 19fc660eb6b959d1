"""The benchmark command runs both pipelines on real MNIST and reports comparable figures (no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from mnist_sweep.runtime import cpu_has_native_bf16

from .helpers import REPO

pytestmark = pytest.mark.slow  # every test here starts a subprocess that trains or sweeps


def test_bench_reports_both_pipelines_and_their_ratio(tmp_path, mnist_root):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "mnist_sweep.bench", "--images", "512", "--repeats", "1", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MNIST_SWEEP_DATA": mnist_root},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for label in ("images/s", "s/epoch", "GFLOP/s", "speed-up", "MFLOP forward per image", "GEMM peak", "of peak"):
        assert label in done.stdout
    figures = json.loads(out.read_text())
    assert set(figures["rows"]) == {
        "project (tensors on device)",
        "project, torch's BN + dropout",
        "seed-style (DataLoader + PIL)",
    }
    assert len(figures["kernel_ratios"]) == 1 and "the project's CPU kernels" in done.stdout
    assert all(row["images_per_s"] > 0 for row in figures["rows"].values())
    assert len(figures["ratios"]) == 1 and figures["forward_flops"] > 1e6
    peaks = figures["gemm_peak_gflop_per_s"]
    # bf16's peak only where bf16 is native: an emulated one is no yardstick (and takes minutes to measure)
    assert set(peaks) == ({"fp32", "bf16"} if cpu_has_native_bf16() else {"fp32"})
    assert all(p > 0 for p in peaks.values())
    assert f"({torch.backends.cpu.get_cpu_capability()}, " in done.stdout  # the machine line names the vector ISA
    project = figures["rows"]["project (tensors on device)"]
    assert project["precision"] == "fp32"  # trainer.amp defaults to off on the CPU
    assert project["peak_fraction"] == pytest.approx(project["gflop_per_s"] / peaks["fp32"])


def test_profile_charges_the_epoch_to_layers_and_the_run_to_its_phases(tmp_path, mnist_root):
    done = subprocess.run(
        [sys.executable, "-m", "mnist_sweep.profile", "--images", "512", "trainer.epochs=1", "dataset.train_limit=512"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MNIST_SWEEP_DATA": mnist_root, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "overrides: trainer.epochs=1 dataset.train_limit=512; dropout 0.05" in out  # not experiment=fast's 0
    for row in ("forward       conv", "backward      conv", "forward       batchnorm", "backward      batchnorm",
                "augmentation", "optimizer     SGD.step", "validation:"):  # fmt: skip
        assert row in out, row
    epoch_rows = out.split("== one whole run")[0]
    epoch_shares = [float(line.split()[-1].rstrip("%")) for line in epoch_rows.splitlines() if line.endswith("%")]
    assert sum(epoch_shares) == pytest.approx(100, abs=0.5)  # every op charged once, the rest is what is left
    for phase in ("start-up (Python, imports, Hydra)", "mlflow_start", "training", "figures", "checkpoint"):
        assert phase in out
    assert "fixed cost" in out and "mnist_sweep.train" in out and "torchvision" not in out  # imported to download only
    assert not list(tmp_path.iterdir())  # the whole run went to a scratch directory


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("bench", ["trainer.batch_size=0"], "trainer.batch_size must be at least 1"),
        ("bench", ["--model", "nosuch"], "Could not find 'model/nosuch'"),
        ("bench", ["--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
        ("bench", ["dataset.download=false"], "mnist files not found"),
        ("profile", ["--no-run", "trainer.batch_size=0"], "trainer.batch_size must be at least 1"),
        ("profile", ["--no-run", "dataset.download=false"], "mnist files not found"),
        ("profile", ["--images", "0"], "argument --images: must be at least 1, got 0"),
        ("calibrate", ["--study", "s", "--top-k", "0"], "argument --top-k: must be at least 1, got 0"),
    ],
)
def test_the_measuring_tools_refuse_bad_input_in_one_paragraph(tool, arguments, expected, tmp_path, request):
    """As `python -m mnist_sweep` does: exit status 2, the tool's name and the reason on stderr, no traceback.
    Missing data (an empty MNIST_SWEEP_DATA) is named as such, not as a bad override; every other case has the
    data, so that it fails on what it is about."""
    data = str(tmp_path) if "files not found" in expected else request.getfixturevalue("mnist_root")
    done = subprocess.run(
        [sys.executable, "-m", f"mnist_sweep.{tool}", *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MNIST_SWEEP_DATA": data, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"mnist_sweep.{tool}: error:" in done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr
    if "files not found" in expected:  # profile once called it "the overrides ... do not make a run"
        assert "overrides" not in done.stderr

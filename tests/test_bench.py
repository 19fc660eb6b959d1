"""The benchmark command runs both pipelines on real MNIST and reports comparable figures (no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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
    assert set(figures["rows"]) == {"project (tensors on device)", "seed-style (DataLoader + PIL)"}
    assert all(row["images_per_s"] > 0 for row in figures["rows"].values())
    assert len(figures["ratios"]) == 1 and figures["forward_flops"] > 1e6
    peaks = figures["gemm_peak_gflop_per_s"]
    assert set(peaks) == {"fp32", "bf16"} and all(p > 0 for p in peaks.values())
    project = figures["rows"]["project (tensors on device)"]
    assert project["precision"] == "fp32"  # trainer.amp defaults to off on the CPU
    assert project["peak_fraction"] == pytest.approx(project["gflop_per_s"] / peaks["fp32"])

"""How a model runs (mnist_sweep.runtime): bf16 on a CPU that would emulate it is warned about, and a compiled
model computes what the eager one does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mnist_sweep import runtime
from mnist_sweep.config import TrainerConfig
from mnist_sweep.models import ConvBlock, GAPHead, Net
from mnist_sweep.runtime import prepare_model


def test_bf16_on_a_cpu_without_native_bf16_is_warned_about(monkeypatch, caplog):
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    for amp in ("off", "auto"):  # fp32 on the CPU: nothing to say
        runtime.warn_if_emulated(amp, cpu)
    assert not caplog.records
    runtime.warn_if_emulated("bf16", cpu)
    assert len(caplog.records) == 1 and "emulates bf16" in caplog.text and "trainer.amp=off" in caplog.text
    caplog.clear()
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)  # AVX512-BF16 or AMX: bf16 is a choice
    runtime.warn_if_emulated("bf16", cpu)
    assert not caplog.records


@pytest.mark.slow  # inductor compiles three graphs (forward, backward, evaluation): ~45 s on 2 cores
def test_a_compiled_model_computes_what_the_eager_one_does():
    """trainer.compile: the model inductor compiles (with torch's kernels, static shapes) gives the eager model's
    logits, loss gradients and batch-norm statistics within float32 rounding, and keeps the plain state_dict keys."""
    import copy

    cpu = torch.device("cpu")
    model = Net([ConvBlock(1, 4, order="bn_relu"), ConvBlock(4, 6), GAPHead(6, num_classes=2)])
    eager = prepare_model(copy.deepcopy(model), TrainerConfig(), cpu)
    compiled = prepare_model(copy.deepcopy(model), TrainerConfig(compile=True), cpu)
    assert set(compiled.state_dict()) == set(model.state_dict())
    x = torch.randn(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    labels = torch.arange(16) % 2
    for net in (eager, compiled):
        nn.functional.cross_entropy(net(x), labels).backward()
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)
    for name in ("running_mean", "running_var"):
        a, b = (torch.cat([b_.get_buffer(name) for b_ in net.modules() if isinstance(b_, nn.BatchNorm2d)])
                for net in (eager, compiled))  # fmt: skip
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    eager.eval(), compiled.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-4, atol=1e-5)

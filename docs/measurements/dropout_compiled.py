"""Dropout's mask-and-scale as one pass through torch.compile (dynamic shapes) against the eager ops it replaces:
first-call compile time, a second shape, equality with the eager result, and microseconds at 2 and 1 threads on
gap8k's first activation (README, Performance). Run: `python docs/measurements/dropout_compiled.py`."""

import time

import torch

t0 = time.perf_counter()


@torch.compile(dynamic=True, fullgraph=True)
def keep_scaled(x, u, dropped: int, scale: float):
    return torch.where(u >= dropped, x * scale, 0.0)


def t(f, n=50):
    for _ in range(5):
        f()
    s = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - s) / n * 1e6


shape = (128, 8, 26, 26)
x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
numel = x.numel()
bits = torch.empty((numel + 7) // 8, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
u = bits.view(torch.uint8)[:numel].as_strided(x.shape, x.stride())
d, s = 13, 256 / 243
out = keep_scaled(x, u, d, s)
print(f"first call (compile) {time.perf_counter() - t0:.1f} s")
ref = x * (u >= d).to(x.dtype).mul_(s)
print(
    "equal",
    torch.equal(out, ref),
    "max diff",
    (out - ref).abs().max().item(),
    out.is_contiguous(memory_format=torch.channels_last),
)
t1 = time.perf_counter()
x2 = torch.randn(64, 12, 10, 10).contiguous(memory_format=torch.channels_last)
u2 = torch.randint(0, 256, x2.shape, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
keep_scaled(x2, u2, 20, 1.1)
print(f"another shape {time.perf_counter() - t1:.2f} s")
for th in (2, 1):
    torch.set_num_threads(th)
    c = sorted(t(lambda: keep_scaled(x, u, d, s)) for _ in range(5))[2]
    e = sorted(t(lambda: x * (u >= d).to(x.dtype).mul_(s)) for _ in range(5))[2]
    print(f"{th} threads: compiled {c:.0f} us, eager {e:.0f} us")

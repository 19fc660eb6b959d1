"""Dropout forward on gap8k's first activation: the mask arithmetic, variant by variant (bits drawn once)."""

import time

import torch


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
variants = {
    "current: x*(u>=d).to(f).mul_(s)": lambda: x * (u >= d).to(x.dtype).mul_(s),
    "compare only u>=d": lambda: u >= d,
    "(u>=d).to(f)": lambda: (u >= d).to(x.dtype),
    "x*s masked_fill_(u<d)": lambda: (x * s).masked_fill_(u < d, 0),
    "where(u>=d, x*s, 0)": lambda: torch.where(u >= d, x * s, 0.0),
    "x*s*bool": lambda: (x * s).mul_(u >= d),
    "x.mul(bool)*s": lambda: torch.mul(x, u >= d).mul_(s),
    "empty_like x": lambda: torch.empty_like(x),
    "x*s": lambda: x * s,
    "contig u>=d": lambda: bits.view(torch.uint8)[:numel] >= d,
}
for threads in (2, 1):
    torch.set_num_threads(threads)
    res = {k: [] for k in variants}
    for _ in range(5):
        for k, f in variants.items():
            res[k].append(t(f))
    print(f"== {threads} threads, us, median of 5")
    for k, v in res.items():
        print(f"  {k:<34}{sorted(v)[2]:8.0f}")
ref = x * (u >= d).to(x.dtype).mul_(s)
for k in ("x*s masked_fill_(u<d)", "where(u>=d, x*s, 0)", "x*s*bool", "x.mul(bool)*s"):
    out = variants[k]()
    print(k, torch.equal(out, ref), out.is_contiguous(memory_format=torch.channels_last))

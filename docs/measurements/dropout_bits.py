"""Mask bits for gap8k's dropout: mt19937 (random_, as mnist_sweep.models.Dropout draws them) against a splitmix64
hash of a counter in torch ops, alone and as the whole mask (README, Performance). Run: `python
docs/measurements/dropout_bits.py`."""

import time

import torch


def t(f, n=50):
    for _ in range(5):
        f()
    s = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - s) / n * 1e6


numel = 128 * 8 * 26 * 26
words = (numel + 7) // 8
ar = torch.arange(words, dtype=torch.int64)
G, C1, C2 = -7046029254386353131, -4658895280553007687, -7723592293110705685
M30, M27, M31 = (1 << 34) - 1, (1 << 37) - 1, (1 << 33) - 1


def mt():
    return torch.empty(words, dtype=torch.int64).random_(-(2**63), 2**63 - 1)


def splitmix():
    seed = int(torch.empty((), dtype=torch.int64).random_(-(2**63), 2**63 - 1))
    z = ar.mul(G).add_(seed)
    z.bitwise_xor_(z.bitwise_right_shift(30).bitwise_and_(M30)).mul_(C1)
    z.bitwise_xor_(z.bitwise_right_shift(27).bitwise_and_(M27)).mul_(C2)
    return z.bitwise_xor_(z.bitwise_right_shift(31).bitwise_and_(M31))


def rand_u8():
    return torch.randint(0, 256, (numel,), dtype=torch.uint8)


x = torch.randn(128, 8, 26, 26).contiguous(memory_format=torch.channels_last)


def whole(bits_fn):
    def f():
        bits = bits_fn()
        u = bits.view(torch.uint8)[:numel].as_strided(x.shape, x.stride())
        return x * (u >= 13).to(x.dtype).mul_(256 / 243)

    return f


for threads in (2, 1):
    torch.set_num_threads(threads)
    rows = {k: [] for k in ("mt19937 bits", "splitmix bits", "randint u8", "mask mt19937", "mask splitmix")}
    for _ in range(5):
        rows["mt19937 bits"].append(t(mt))
        rows["splitmix bits"].append(t(splitmix))
        rows["randint u8"].append(t(rand_u8))
        rows["mask mt19937"].append(t(whole(mt)))
        rows["mask splitmix"].append(t(whole(splitmix)))
    print(f"{threads} threads, [128, 8, 26, 26], us (median of 5):", {k: round(sorted(v)[2]) for k, v in rows.items()})
# quality: byte histogram of splitmix output is flat
b = splitmix().view(torch.uint8).long()
h = torch.bincount(b, minlength=256).float()
print("splitmix byte histogram: min/max over mean", (h.min() / h.mean()).item(), (h.max() / h.mean()).item())

"""What gap8k's dropout mask costs on its first activation, [128, 8, 26, 26] channels_last (README, Performance):

1. the mask's random bits: mt19937 (`random_`, as mnist_sweep.models.Dropout draws them) against a splitmix64 hash
   of a counter in torch ops, alone and followed by the mask; torch.randint per byte for scale;
2. the mask arithmetic variant by variant, the bits drawn once, and whether each variant equals Dropout's;
3. the same arithmetic as one fused pass through torch.compile(dynamic=True): compile time, a second shape,
   equality, speed.

Microseconds per call, medians of 5 rounds (mnist_sweep.batchnorm._time_us), at 2 threads then 1. Run from the
repository root on the idle machine: `python docs/measurements/dropout_mask.py`."""

import time

import torch

from mnist_sweep.batchnorm import _time_us

SHAPE = (128, 8, 26, 26)
DROPPED, SCALE = 13, 256 / 243  # p = 0.05 as Dropout rounds it: 13 of 256 byte values drop
x = torch.randn(SHAPE).contiguous(memory_format=torch.channels_last)
numel = x.numel()
words = (numel + 7) // 8


def mt19937_bits() -> torch.Tensor:
    return torch.empty(words, dtype=torch.int64).random_(-(2**63), 2**63 - 1)


COUNTER = torch.arange(words, dtype=torch.int64)
GOLDEN, MIX1, MIX2 = -7046029254386353131, -4658895280553007687, -7723592293110705685  # splitmix64's, as int64


def splitmix_bits() -> torch.Tensor:
    # splitmix64 over a counter; torch's >> on int64 is arithmetic, so each shift is masked to make it logical
    seed = int(torch.empty((), dtype=torch.int64).random_(-(2**63), 2**63 - 1))  # one draw of torch's generator
    z = COUNTER.mul(GOLDEN).add_(seed)
    z.bitwise_xor_(z.bitwise_right_shift(30).bitwise_and_((1 << 34) - 1)).mul_(MIX1)
    z.bitwise_xor_(z.bitwise_right_shift(27).bitwise_and_((1 << 37) - 1)).mul_(MIX2)
    return z.bitwise_xor_(z.bitwise_right_shift(31).bitwise_and_((1 << 33) - 1))


def as_bytes(bits: torch.Tensor) -> torch.Tensor:
    """One uniform byte per element, laid out as x (Dropout's view)."""
    return bits.view(torch.uint8)[:numel].as_strided(x.shape, x.stride())


def dropout_mask(u: torch.Tensor) -> torch.Tensor:
    return x * (u >= DROPPED).to(x.dtype).mul_(SCALE)  # mnist_sweep.models.Dropout.forward's arithmetic


@torch.compile(dynamic=True, fullgraph=True)
def fused_mask(x, u, dropped: int, scale: float):
    return torch.where(u >= dropped, x * scale, 0.0)


def medians(cases: dict) -> dict:
    rounds = {name: [] for name in cases}
    for _ in range(5):
        for name, step in cases.items():
            rounds[name].append(_time_us(step, 50))
    return {name: sorted(times)[2] for name, times in rounds.items()}


def report(title: str, cases: dict) -> None:
    for threads in (2, 1):
        torch.set_num_threads(threads)
        print(f"== {title}, {threads} threads, us")
        for name, us in medians(cases).items():
            print(f"  {name:<34}{us:8.0f}")


u = as_bytes(mt19937_bits())
report(
    "1. the bits",
    {
        "mt19937 bits": mt19937_bits,
        "splitmix bits": splitmix_bits,
        "randint, a byte per element": lambda: torch.randint(0, 256, (numel,), dtype=torch.uint8),
        "mask from mt19937": lambda: dropout_mask(as_bytes(mt19937_bits())),
        "mask from splitmix": lambda: dropout_mask(as_bytes(splitmix_bits())),
    },
)
counts = torch.bincount(splitmix_bits().view(torch.uint8).long(), minlength=256).float() / (words * 8 / 256)
print(f"splitmix byte histogram, min and max over the mean: {counts.min():.3f} {counts.max():.3f}")

variants = {
    "Dropout's: x*(u>=d).to(f).mul_(s)": lambda: dropout_mask(u),
    "compare only u>=d": lambda: u >= DROPPED,
    "(u>=d).to(f)": lambda: (u >= DROPPED).to(x.dtype),
    "x*s masked_fill_(u<d)": lambda: (x * SCALE).masked_fill_(u < DROPPED, 0),
    "where(u>=d, x*s, 0)": lambda: torch.where(u >= DROPPED, x * SCALE, 0.0),
    "x*s*bool": lambda: (x * SCALE).mul_(u >= DROPPED),
    "x.mul(bool)*s": lambda: torch.mul(x, u >= DROPPED).mul_(SCALE),
    "x*s": lambda: x * SCALE,
    "u>=d on contiguous bytes": lambda: u.permute(0, 2, 3, 1).reshape(-1) >= DROPPED,
}
report("2. the mask arithmetic", variants)
for name in ("x*s masked_fill_(u<d)", "where(u>=d, x*s, 0)", "x*s*bool", "x.mul(bool)*s"):
    out = variants[name]()
    print(f"  {name} equals Dropout's: {torch.equal(out, dropout_mask(u))}, channels_last: "
          f"{out.is_contiguous(memory_format=torch.channels_last)}")  # fmt: skip

start = time.perf_counter()
out = fused_mask(x, u, DROPPED, SCALE)
print(f"== 3. fused: first call (compile, torch._dynamo's import included) {time.perf_counter() - start:.1f} s; "
      f"equals Dropout's: {torch.equal(out, dropout_mask(u))}")  # fmt: skip
start = time.perf_counter()
other = torch.randn(64, 12, 10, 10).contiguous(memory_format=torch.channels_last)
fused_mask(
    other, torch.randint(0, 256, other.shape, dtype=torch.uint8).contiguous(memory_format=torch.channels_last), 20, 1.1
)
print(f"   a second shape: {time.perf_counter() - start:.2f} s")
report(
    "3. fused against Dropout's",
    {"fused": lambda: fused_mask(x, u, DROPPED, SCALE), "Dropout's": lambda: dropout_mask(u)},
)

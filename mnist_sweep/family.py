"""A parametric CNN family for architecture search, assembled from the blocks in mnist_sweep.models.

A network is a list of stages; a stage is a run of 3x3 convs, one width per conv, then what comes after it:

    pool           max-pool 2x2
    squeeze        a 1x1 conv to `squeeze` channels (a cheap width change between stages)
    squeeze_pool   the 1x1 conv, then the pool (seed 000's transition, seed 003's last stage)
    stride2        no pool: the next stage's first conv has stride 2
    none           nothing

then a head: `gap` (global average pool, Linear), `gap_direct` (global average pool of a map that already has one
channel per class: no Linear at all, seed 003) or `linear` (flatten, Linear).

Both seeds the search starts from are members, layer for layer: conf/model/gap8k.yaml (7,788 parameters) and
conf/model/pool7k.yaml (6,790) are conf/model/family.yaml with the knobs in conf/model/family_pool7k.yaml, and
tests/test_models.py checks both counts. Every combination builds a valid network for 28x28 inputs, so a search
never wastes a trial on a shape error: with padding 0 a conv pads anyway once its output would drop below 6x6, a
pool is skipped below 4x4, and the last stage cannot hand a stride to a stage that does not exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from mnist_sweep.models import IMAGE_SIZE, ConvBlock, Dropout, GAPHead, Net

AFTER = ("pool", "squeeze", "squeeze_pool", "stride2", "none")
LAST_AFTER = ("pool", "squeeze", "squeeze_pool", "none")  # nothing follows the last stage to take a stride
HEADS = ("gap", "gap_direct", "linear")
ORDERS = ("relu_bn", "bn_relu")
DROPOUT_AT = ("conv", "pool")
MAX_STAGES = 5
MIN_VALID_OUTPUT = 6  # an unpadded conv whose output would be smaller pads instead (gap8k's last conv)
MIN_POOL_SIZE = 4


def build_family(
    stages: Sequence[Mapping[str, Any]],
    padding: int = 0,
    order: str = "relu_bn",
    bias: bool = False,
    dropout: float = 0.05,
    dropout_at: str = "conv",
    squeeze_act: bool = False,
    separable: bool = False,
    head: str = "gap",
    crop: int | None = None,
    num_classes: int = 10,
) -> Net:
    """stages: [{widths: [8, 8], after: squeeze_pool, squeeze: 8}, ...].

    padding 0 (valid) or 1 (same) for the 3x3 convs; order of ReLU and BatchNorm; bias on the convs and the Linear;
    dropout after every conv (dropout_at=conv, and before the Linear head) or after every pool (dropout_at=pool);
    squeeze_act: the 1x1 squeeze is a full conv block (activation, BN) rather than a bare linear mix; separable:
    every 3x3 conv but the first is depthwise then pointwise; crop: the net looks only at the central crop x crop
    pixels (models.Net), and its convs pad where they would shrink that below 6x6, as they do on the whole image.
    """
    check_knobs(stages, padding, order, dropout_at, head, num_classes)
    conv_kw = {"bias": bias, "order": order, "dropout": dropout if dropout_at == "conv" else 0.0}
    layers: list[nn.Module] = []
    in_ch, size, stride = 1, crop or IMAGE_SIZE, 1
    for index, stage in enumerate(stages):
        for width in stage["widths"]:
            pad = 1 if stride == 2 or padding == 1 or size - 2 < MIN_VALID_OUTPUT else 0
            sep = separable and in_ch > 1
            layers.append(ConvBlock(in_ch, int(width), padding=pad, stride=stride, separable=sep, **conv_kw))
            size = (size + 2 * pad - 3) // stride + 1
            in_ch, stride = int(width), 1
        after = stage.get("after", "none")
        if after.startswith("squeeze"):
            squeeze = int(stage["squeeze"])
            kw = conv_kw if squeeze_act else {"bias": False, "order": "none"}  # seed 000's bare 1x1 mix
            layers.append(ConvBlock(in_ch, squeeze, kernel=1, **kw))
            in_ch = squeeze
        if after in ("pool", "squeeze_pool") and size >= MIN_POOL_SIZE:
            layers.append(nn.MaxPool2d(2))
            size //= 2
            if dropout_at == "pool" and dropout > 0:
                layers.append(Dropout(dropout))
        if after == "stride2" and index < len(stages) - 1:
            stride = 2
    layers += head_layers(head, in_ch, size, num_classes, bias, dropout if dropout_at == "conv" else 0.0)
    return Net(layers, crop=crop)


def check_knobs(stages, padding, order, dropout_at, head, num_classes) -> None:
    # ValueError: mnist_sweep.train.build turns it into a one-line user error naming the model.
    if not 1 <= len(stages) <= MAX_STAGES:
        raise ValueError(f"family stages must list 1 to {MAX_STAGES} stages, got {len(stages)}")
    for i, stage in enumerate(stages, 1):
        widths = list(stage.get("widths") or [])
        if not widths or any(int(w) < 1 for w in widths):
            raise ValueError(f"family stage {i} needs widths, a list of positive conv widths; got {widths}")
        after = stage.get("after", "none")
        if after not in AFTER:
            raise ValueError(f"family stage {i} after must be one of {AFTER}, got {after!r}")
        if after.startswith("squeeze") and int(stage.get("squeeze") or 0) < 1:
            raise ValueError(f"family stage {i} has after={after} and needs squeeze, a positive width")
    if padding not in (0, 1):
        raise ValueError(f"family padding must be 0 (valid) or 1 (same), got {padding}")
    if order not in ORDERS:
        raise ValueError(f"family order must be one of {ORDERS}, got {order!r}")
    if dropout_at not in DROPOUT_AT:
        raise ValueError(f"family dropout_at must be one of {DROPOUT_AT}, got {dropout_at!r}")
    if head not in HEADS:
        raise ValueError(f"family head must be one of {HEADS}, got {head!r}")
    if head == "gap_direct" and output_width(stages[-1]) != num_classes:
        raise ValueError(
            f"family head gap_direct averages one channel per class: the last stage must end with {num_classes} "
            f"channels, got {output_width(stages[-1])}"
        )


def output_width(stage: Mapping[str, Any]) -> int:
    return int(stage["squeeze"] if str(stage.get("after", "none")).startswith("squeeze") else stage["widths"][-1])


def head_layers(head: str, channels: int, size: int, num_classes: int, bias: bool, dropout: float) -> list[nn.Module]:
    if head == "gap":
        return [GAPHead(channels, num_classes, bias=bias, dropout=dropout)]
    if head == "gap_direct":
        return [GAPHead(num_classes, num_classes, classifier=False)]
    return [nn.Flatten(), nn.Linear(channels * size * size, num_classes, bias=bias)]

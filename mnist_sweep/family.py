"""A parametric CNN family for architecture search, assembled from the blocks in mnist_sweep.models.

Every combination of knobs builds a valid network for 28x28 inputs, so a search never wastes a trial on a shape
error: a "valid" (unpadded) conv switches to padding 1 once the feature map is small, and a pool is skipped when
there is too little left to halve. conf/model/family.yaml exposes the knobs; the Optuna sweeper searches them.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from mnist_sweep.models import ConvBlock, GAPHead, Net, Residual

TRANSITIONS = ("pool", "conv1x1_pool", "none")
HEADS = ("gap", "conv1x1_gap", "linear")
MAX_BLOCKS = 4
IMAGE_SIZE = 28
MIN_VALID_SIZE = 5  # an unpadded 3x3 conv on a smaller map would leave too little to pool or average


def build_family(
    blocks: int = 2,
    channels: Sequence[int] = (8, 16),
    convs_per_block: int = 3,
    padding: int = 0,
    transition: str = "conv1x1_pool",
    order: str = "relu_bn",
    dropout: float = 0.05,
    residual: bool = False,
    head: str = "gap",
    bias: bool = False,
    num_classes: int = 10,
) -> Net:
    """blocks x convs_per_block 3x3 convs; block i has channels[i]; a transition between blocks; then a head.

    The first conv of a block changes the width; with residual=True the block's later convs (same width, padding 1)
    are each wrapped in a skip connection. channels may be longer than blocks: the extra entries are ignored, so a
    search can keep one knob per possible block.
    """
    check_knobs(blocks, channels, convs_per_block, padding, transition, head)
    layers: list[nn.Module] = []
    in_ch, size = 1, IMAGE_SIZE
    for index, out_ch in enumerate(channels[:blocks]):
        block, size = conv_block(in_ch, out_ch, size, convs_per_block, padding, order, dropout, residual, bias)
        layers += block
        if index < blocks - 1:
            step, size = transition_layers(transition, out_ch, size)
            layers += step
        in_ch = out_ch
    layers += head_layers(head, in_ch, size, num_classes, dropout)
    return Net(layers)


def check_knobs(blocks, channels, convs_per_block, padding, transition, head) -> None:
    # ValueError: mnist_sweep.train.build turns it into a one-line user error naming the model.
    if not 1 <= blocks <= min(MAX_BLOCKS, len(channels)):
        raise ValueError(f"family blocks must be between 1 and {min(MAX_BLOCKS, len(channels))}, got {blocks}")
    if any(int(c) < 1 for c in channels[:blocks]):
        raise ValueError(f"family channels must be positive, got {list(channels[:blocks])}")
    if convs_per_block < 1:
        raise ValueError(f"family convs_per_block must be at least 1, got {convs_per_block}")
    if padding not in (0, 1):
        raise ValueError(f"family padding must be 0 (valid) or 1 (same), got {padding}")
    if transition not in TRANSITIONS:
        raise ValueError(f"family transition must be one of {TRANSITIONS}, got {transition!r}")
    if head not in HEADS:
        raise ValueError(f"family head must be one of {HEADS}, got {head!r}")


def conv_block(in_ch, out_ch, size, n_convs, padding, order, dropout, residual, bias) -> tuple[list[nn.Module], int]:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        if i > 0 and residual:
            # A skip connection needs the body to keep the shape: same width, padding 1.
            layers.append(Residual([ConvBlock(out_ch, out_ch, padding=1, bias=bias, order=order, dropout=dropout)]))
            continue
        pad = padding if size >= MIN_VALID_SIZE else 1
        layers.append(
            ConvBlock(in_ch if i == 0 else out_ch, out_ch, padding=pad, bias=bias, order=order, dropout=dropout)
        )
        size = size - 2 + 2 * pad
    return layers, size


def transition_layers(transition: str, channels: int, size: int) -> tuple[list[nn.Module], int]:
    layers: list[nn.Module] = []
    if transition == "conv1x1_pool":
        # Seed 000's bare 1x1 mix before the pool.
        layers.append(ConvBlock(channels, channels, kernel=1, order="none"))
    if transition != "none" and size >= 4:
        layers.append(nn.MaxPool2d(2))
        size //= 2
    return layers, size


def head_layers(head: str, channels: int, size: int, num_classes: int, dropout: float) -> list[nn.Module]:
    if head == "gap":
        return [GAPHead(channels, num_classes, dropout=dropout)]
    if head == "conv1x1_gap":
        # Seed 003's head: one channel per class, then the average is the logit (no Linear layer).
        return [
            ConvBlock(channels, num_classes, kernel=1, bias=True, order="none"),
            GAPHead(num_classes, num_classes, classifier=False),
        ]
    return [nn.Flatten(), nn.Linear(channels * size * size, num_classes)]

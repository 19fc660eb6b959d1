"""The architecture half of the default search, define-by-run (as in optuna-examples): a knob is asked for only
when the network has the layer it shapes, so a 2-stage net samples no widths for stages 3 and 4 and TPE and the
importance plot see only knobs that mattered. The recipe half (lr, weight decay, batch size, augmentation, label
smoothing) is always there and stays declarative, in conf/hparams_search/mnist_family.yaml.

The sweeper calls family_space(cfg, trial) (hydra.sweeper.custom_search_space) for each trial. The Optuna params
it suggests ("stages", "s1.convs", "s1.w1", ...) are the search coordinates; the dict it returns is what the trial
runs with, as overrides of conf/model/family.yaml. Seeds are enqueued in these coordinates (warm_start).
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf, open_dict

from mnist_sweep.family import AFTER, DROPOUT_AT, HEADS, LAST_AFTER, ORDERS
from mnist_sweep.models import dropped_bytes

# Two or three stages: one stage keeps 28x28 maps to the end (over the MACs cap, or too shallow to see digits
# whole), and a fourth has at most 3x3 maps left to work on. Every seed has two or three.
STAGES = (2, 3)
MAX_CONVS = 4
WIDTH_STEP = 2  # every seed width (8, 10, 16) is on this grid
# Dropout is switched on or off first, and its rate asked for only when it is on. Drawn from [0, 0.15] with no
# switch, TPE gave 55 of the 100 trained trials of the default sweep at commit 000e3ba rates under 0.02 (of another
# run's, 5), which drop next to nothing but pay for a whole mask (a one-thread epoch up to 1.15-1.20x slower:
# README, "Where the time goes"), and only a seed had none. Rates from 0.02 (5 activations in 256) up.
DROPOUT_RATE = (0.02, 0.15)


@dataclass(frozen=True)
class Choices:
    """Which values a space offers for the family's categorical knobs."""

    after: tuple[str, ...] = AFTER
    orders: tuple[str, ...] = ORDERS
    separable: tuple[bool, ...] = (False, True)
    min_width: int = 4
    max_width: int = 32
    sized_to_budget: bool = False  # widths sized to budget.max_params (width_range)
    widest_share: float = 1 / 3  # sized: the share of the budget the widest conv (w to w channels) may hold


FAMILY = Choices()  # every value the family offers

# The default search (conf/hparams_search/mnist_family.yaml): the same family, less of it. The first default sweep,
# over the whole family, trained depthwise-separable nets only (the budget rejected most full-conv draws, and TPE
# followed the trials that fitted) and its best reached 98.9 % validation (README, "What is searched"). Kept out: a
# stage followed by nothing or by a bare squeeze (it only lengthens the next stage), conv -> BN -> ReLU and
# depthwise-separable convs (both seeds are conv -> ReLU -> BN with full convs). One-value knobs are still
# suggested, so a warm-start entry names the same params in both spaces (TPE ignores a single choice).
FOCUSED = Choices(
    after=("pool", "squeeze_pool", "stride2"),
    orders=("relu_bn",),
    separable=(False,),
    max_width=24,
    sized_to_budget=True,
)

# FOCUSED with room for the widths hand-tuned Fashion-MNIST nets use (experiment=fashion18k: 16-16 / 24-24 / 32, its
# last conv 37 % of its 18,544 parameters). FOCUSED sizes 20,000 parameters to widths 12-24; this, to 16-32.
WIDE = Choices(
    after=FOCUSED.after,
    orders=FOCUSED.orders,
    separable=FOCUSED.separable,
    max_width=32,
    sized_to_budget=True,
    widest_share=1 / 2,
)


def family_space(cfg: Any, trial: Any) -> dict[str, Any]:
    """The whole family (hydra.sweeper.custom_search_space=mnist_sweep.search_space.family_space). trial: an
    optuna.Trial. Returns the model overrides (model.stages and the model-wide knobs)."""
    return suggest_family(trial, FAMILY, width_range(FAMILY, None))


def focused_space(cfg: Any, trial: Any) -> dict[str, Any]:
    """The default search: the family with FOCUSED's choices, its widths sized to the sweep's budget."""
    return sized_to_budget(cfg, trial, FOCUSED)


def wide_space(cfg: Any, trial: Any) -> dict[str, Any]:
    """The default search with WIDE's widths (hydra.sweeper.custom_search_space=mnist_sweep.search_space.wide_space):
    the same knobs and choices, each conv 16-32 wide at 20,000 parameters instead of 12-24."""
    return sized_to_budget(cfg, trial, WIDE)


def sized_to_budget(cfg: Any, trial: Any, choices: Choices) -> dict[str, Any]:
    budget = OmegaConf.select(cfg, "budget.max_params") if cfg is not None else None
    return suggest_family(trial, choices, width_range(choices, budget))


def width_range(choices: Choices, max_params: int | None) -> dict[str, int]:
    """The conv widths a space draws from. Sized to the budget: the widest conv may hold widest_share of it, a third
    by default (a full 3x3 conv from w to w channels is 9w² parameters; gap8k's widest, 16 to 16, is 30 % of its
    7,788), and none is narrower than half the widest (a 4-wide conv among wider ones, a bottleneck, was common among
    the first default sweep's worst nets). Unsized, only 9 % of random draws fitted 6,000 parameters; sized to a
    third, 40-65 % fit budgets from 2,000 to 20,000, so the sampler learns from trained trials instead of rejected
    ones (sized to half, as WIDE is, 14 % of random draws fit 20,000 parameters and 4M MACs)."""
    if not choices.sized_to_budget or max_params is None:
        return {"low": choices.min_width, "high": choices.max_width, "step": WIDTH_STEP}
    widest = math.sqrt(max_params * choices.widest_share / 9)
    high = max(2 * choices.min_width, min(choices.max_width, WIDTH_STEP * int(widest / WIDTH_STEP)))
    return {"low": max(choices.min_width, WIDTH_STEP * (high // (2 * WIDTH_STEP))), "high": high, "step": WIDTH_STEP}


def suggest_family(trial: Any, choices: Choices, width: dict[str, int]) -> dict[str, Any]:
    num_classes = 10
    head = trial.suggest_categorical("head", HEADS)
    n_stages = trial.suggest_int("stages", *STAGES)
    stages = []
    for index in range(1, n_stages + 1):
        last = index == n_stages
        # The last stage has its own name for `after`: a stride needs a next stage, so its choices differ, and
        # Optuna requires one distribution per param name across a study.
        name, offered = ("final.after", LAST_AFTER) if last else (f"s{index}.after", choices.after)
        after = trial.suggest_categorical(name, offered)
        n_convs = trial.suggest_int(f"s{index}.convs", 1, MAX_CONVS)
        squeezes = after.startswith("squeeze")
        # gap_direct averages one channel per class: the last width is then fixed, not searched.
        fixed_last = num_classes if last and head == "gap_direct" else None
        widths = [
            fixed_last
            if (fixed_last and j == n_convs and not squeezes)
            else trial.suggest_int(f"s{index}.w{j}", **width)
            for j in range(1, n_convs + 1)
        ]
        stage: dict[str, Any] = {"widths": widths, "after": after}
        if squeezes:
            stage["squeeze"] = fixed_last or trial.suggest_int(f"s{index}.squeeze", **width)
        stages.append(stage)
    dropout = (
        trial.suggest_float("dropout", *DROPOUT_RATE) if trial.suggest_categorical("dropout_on", (False, True)) else 0.0
    )
    return {
        "model.stages": stages,
        "model.head": head,
        "model.padding": trial.suggest_int("padding", 0, 1),
        "model.order": trial.suggest_categorical("order", choices.orders),
        "model.bias": trial.suggest_categorical("bias", (False, True)),
        "model.dropout": dropout,
        "model.dropout_at": trial.suggest_categorical("dropout_at", DROPOUT_AT) if dropout > 0 else "conv",
        "model.squeeze_act": (
            trial.suggest_categorical("squeeze_act", (False, True))
            if any(s["after"].startswith("squeeze") for s in stages)
            else False
        ),
        "model.separable": trial.suggest_categorical("separable", choices.separable),
    }


WIDTH_PARAM = re.compile(r"^s\d+\.(w\d+|squeeze)$")  # the coordinates that are conv widths: s1.w1, s2.squeeze, ...
SCALES = tuple(1 - 0.05 * i for i in range(15))  # from 1.0 down to 0.3
GROWTH = tuple(1 + 0.05 * i for i in range(61))  # from 1.0 up to 4.0


def fit_to_budget(cfg: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """The default search's hydra.sweeper.warm_start_adapter: a seed is queued with every width scaled by one factor
    (on the width grid, inside the budget-sized width range) to the largest factor that fits the sweep's budget
    (budget.max_params and budget.max_macs); its layout, head and recipe stay the seed's. Over the budget, it is scaled
    down, then grown back step by step into what the budget has left (grown_back); under it, scaled up (grown_up).
    The seeds were tuned by hand at 7-8k parameters; a rejected seed teaches TPE only where the budget ends, a fitted
    one gives it a trained, known-good design from the first trials, and stage 2 a baseline of the budget's size. An
    entry that no factor fits is queued as written (and rejected untrained if over budget), as are one that leaves
    knobs to the sampler (it has no size until they are drawn) and one that fits where budget.max_params is null."""
    entry = with_dropout_switch(entry)
    try:
        fitting = fits(cfg, entry)
    except ValueError:  # optuna's FixedTrial: a knob the entry does not set
        return entry
    max_params = OmegaConf.select(cfg, "budget.max_params")
    width = width_range(FOCUSED, max_params)
    if fitting:
        return entry if max_params is None else grown_up(cfg, entry, width)  # no budget to grow into
    for scale in SCALES[1:]:
        scaled = scaled_widths(entry, scale, width)
        if fits(cfg, scaled):
            return grown_back(cfg, scaled, entry, width["high"])
    return entry


def with_dropout_switch(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry written before the space asked `dropout_on` (commit 72e06b4) names a rate only. Queued so, it left
    the switch to the sampler, which could turn it off and drop the rate in silence, and it could not be fitted
    (fit_to_budget counts only entries that set every knob). Its switch follows from its rate: on where the rate
    drops anything (models.Dropout rounds p to 1/256, so 1/512 or less drops nothing), else off, without the rate
    and its place, which the space asks only when on."""
    if "dropout" not in entry or "dropout_on" in entry:
        return entry
    if dropped_bytes(entry["dropout"]) > 0:
        return {**entry, "dropout_on": True}
    return {k: v for k, v in entry.items() if k not in ("dropout", "dropout_at")} | {"dropout_on": False}


def scaled_widths(entry: dict[str, Any], scale: float, width: dict[str, int]) -> dict[str, Any]:
    return {
        key: min(width["high"], max(width["low"], WIDTH_STEP * round(value * scale / WIDTH_STEP)))
        if WIDTH_PARAM.match(key)
        else value
        for key, value in entry.items()
    }


def grown_up(cfg: Any, entry: dict[str, Any], width: dict[str, int]) -> dict[str, Any]:
    """A seed under the budget, scaled up by the largest factor that still fits. Without it, a seed 8 wide queued in
    a search whose widths start at 12 (Fashion-MNIST's 20,000) sat outside the space (Optuna warned of every width)
    and stage 2 measured found nets of 20,000 parameters against a baseline of 7,788. Every width grows with the
    factor, and with them parameters and MACs, so whether a factor fits changes once along GROWTH: a bisection
    finds the last that fits in ~6 counts instead of 61. None fits (the width range alone can push a seed over):
    the seed as written."""
    low, high = 0, len(GROWTH)  # GROWTH[:low] fit (none known yet), GROWTH[high:] do not
    while low < high:
        middle = (low + high) // 2
        if fits(cfg, scaled_widths(entry, GROWTH[middle], width)):
            low = middle + 1
        else:
            high = middle
    return scaled_widths(entry, GROWTH[low - 1], width) if low else entry


def grown_back(cfg: Any, scaled: dict[str, Any], seed: dict[str, Any], high: int) -> dict[str, Any]:
    """One scale for every width, on a grid of 2, leaves part of the budget unused (gap8k at 4,000: 3,274
    parameters). Give it back one width step at a time, to the width scaled down most against the seed's first (so
    the seed's proportions hold), while the net still fits; a width that no longer fits one more step stays."""
    grown = dict(scaled)
    growable = {key for key in grown if WIDTH_PARAM.match(key)}
    while growable:
        key = min(growable, key=lambda k: (grown[k] / seed[k], k))
        wider = {**grown, key: grown[key] + WIDTH_STEP}
        if grown[key] + WIDTH_STEP <= min(high, seed[key]) and fits(cfg, wider):
            grown = wider
        else:
            growable.discard(key)
    return grown


def fits(cfg: Any, entry: dict[str, Any]) -> bool:
    """Whether the net a warm-start entry describes is within cfg's budget, counted as the sweeper counts a trial."""
    # Imported here: a single run never imports Optuna or the sweeper.
    import optuna

    from mnist_sweep.trial import model_size
    from optuna_sweeper.budget import Size

    overrides = suggest_family(optuna.trial.FixedTrial(entry), FAMILY, width_range(FAMILY, None))
    trial_cfg = copy.deepcopy(cfg)
    with open_dict(trial_cfg):
        for key, value in overrides.items():
            OmegaConf.update(trial_cfg, key, value, merge=False)
    return not Size(*model_size(trial_cfg)).over  # the sweeper's own rule for rejecting a trial

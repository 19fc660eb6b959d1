"""The architecture half of the default search, define-by-run (as in optuna-examples): a knob is asked for only
when the network has the layer it shapes, so a 2-stage net samples no widths for stages 3 and 4 and TPE and the
importance plot see only knobs that mattered. The recipe half (lr, weight decay, batch size, augmentation, label
smoothing) is always there and stays declarative, in conf/hparams_search/mnist_family.yaml.

The sweeper calls family_space(cfg, trial) (hydra.sweeper.custom_search_space) for each trial. The Optuna params
it suggests ("stages", "s1.convs", "s1.w1", ...) are the search coordinates; the dict it returns is what the trial
runs with, as overrides of conf/model/family.yaml. Seeds are enqueued in these coordinates (warm_start).
"""

from __future__ import annotations

from typing import Any

from mnist_sweep.family import AFTER, DROPOUT_AT, HEADS, LAST_AFTER, ORDERS

# Two or three stages: one stage keeps 28x28 maps to the end (over the MACs cap, or too shallow to see digits
# whole), and a fourth has at most 3x3 maps left to work on. Every seed has two or three.
STAGES = (2, 3)
MAX_CONVS = 4
# From 8: the first default sweep drew 4-wide convs often, and every net with one (a bottleneck) trained badly.
WIDTH = {"low": 8, "high": 32, "step": 2}  # every seed width (8, 10, 16) is on this grid


def family_space(cfg: Any, trial: Any) -> dict[str, Any]:
    """trial: an optuna.Trial. Returns the model overrides (model.stages and the model-wide knobs)."""
    num_classes = 10
    head = trial.suggest_categorical("head", HEADS)
    n_stages = trial.suggest_int("stages", *STAGES)
    stages = []
    for index in range(1, n_stages + 1):
        last = index == n_stages
        # The last stage has its own name for `after`: a stride needs a next stage, so its choices differ, and
        # Optuna requires one distribution per param name across a study.
        after = trial.suggest_categorical("final.after" if last else f"s{index}.after", LAST_AFTER if last else AFTER)
        n_convs = trial.suggest_int(f"s{index}.convs", 1, MAX_CONVS)
        squeezes = after.startswith("squeeze")
        # gap_direct averages one channel per class: the last width is then fixed, not searched.
        fixed_last = num_classes if last and head == "gap_direct" else None
        widths = [
            fixed_last
            if (fixed_last and j == n_convs and not squeezes)
            else trial.suggest_int(f"s{index}.w{j}", **WIDTH)
            for j in range(1, n_convs + 1)
        ]
        stage: dict[str, Any] = {"widths": widths, "after": after}
        if squeezes:
            stage["squeeze"] = fixed_last or trial.suggest_int(f"s{index}.squeeze", **WIDTH)
        stages.append(stage)
    dropout = trial.suggest_float("dropout", 0.0, 0.15)
    return {
        "model.stages": stages,
        "model.head": head,
        "model.padding": trial.suggest_int("padding", 0, 1),
        "model.order": trial.suggest_categorical("order", ORDERS),
        "model.bias": trial.suggest_categorical("bias", (False, True)),
        "model.dropout": dropout,
        "model.dropout_at": trial.suggest_categorical("dropout_at", DROPOUT_AT) if dropout > 0 else "conv",
        "model.squeeze_act": (
            trial.suggest_categorical("squeeze_act", (False, True))
            if any(s["after"].startswith("squeeze") for s in stages)
            else False
        ),
        "model.separable": trial.suggest_categorical("separable", (False, True)),
    }

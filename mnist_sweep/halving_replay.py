"""What successive halving would have done to a set of complete learning curves, replayed over shuffled trial orders:
epochs spent per trial, whether the best trial finishes, and by how much the best finisher trails it (used by
`python -m mnist_sweep.calibrate`, README "Pruning, calibrated"). Knows nothing of MNIST: a curve is a list of
validation values, one per epoch."""

from __future__ import annotations

import random
from dataclasses import dataclass


def rungs(min_resource: int, reduction_factor: int, epochs: int) -> list[int]:
    """The epochs successive halving judges at (min_early_stopping_rate 0), never the last one."""
    found, epoch = [], min_resource
    while epoch < epochs:
        found.append(epoch)
        epoch *= reduction_factor
    return found


def halving_stops(histories: list[list[float]], min_resource: int, reduction_factor: int) -> list[int]:
    """The epoch each trial stops at when the trials run in this order under successive halving (the last epoch
    for a trial that finishes). Written out rather than driven through Optuna: a replay over thousands of orders
    must take milliseconds, and the rule is three lines (optuna/pruners/_successive_halving.py)."""
    epochs = len(histories[0])
    seen: dict[int, list[float]] = {rung: [] for rung in rungs(min_resource, reduction_factor, epochs)}
    stops = []
    for history in histories:
        stop = epochs
        for rung, values in seen.items():
            value = history[rung - 1]
            values.append(value)
            keep = max(len(values) // reduction_factor, 1)
            if value < sorted(values, reverse=True)[keep - 1]:
                stop = rung
                break
        stops.append(stop)
    return stops


@dataclass
class Replay:
    min_resource: int
    reduction_factor: int
    rungs: list[int]
    epochs_per_trial: float  # mean over trials and orders
    speedup: float  # trials per hour against no pruning (every trial to the last epoch)
    best_finishes: float  # fraction of orders in which the best trial (by its best value) is among the finishers
    regret: float  # mean of (best trial's objective - best finisher's objective)
    best_chosen: float  # fraction of orders in which the best trial is among the top_k finishers (stage 2's picks)
    chosen_regret: float  # mean of (best trial's objective - best objective among those top_k)


def replay(
    histories: list[list[float]],
    min_resource: int,
    reduction_factor: int,
    orders: int = 1000,
    judged: list[float] | None = None,
    top_k: int = 2,
) -> Replay:
    """Halving over `histories` in shuffled orders. A trial's objective is its best validation accuracy; stage 2
    takes the top_k finishers by it. `judged`: what decides which trial was truly best, and by how much (default
    the objective itself; with a cheaper protocol's curves, the same recipes' objective under the full one)."""
    epochs = len(histories[0])
    objective = [max(h) for h in histories]
    judged = objective if judged is None else judged
    best = max(judged)
    rng = random.Random(0)
    order = list(range(len(histories)))
    spent, best_kept, regret, best_chosen, chosen_regret = 0, 0, 0.0, 0, 0.0
    for _ in range(orders):
        rng.shuffle(order)
        stops = halving_stops([histories[i] for i in order], min_resource, reduction_factor)
        spent += sum(stops)
        finishers = [i for i, stop in zip(order, stops, strict=True) if stop == epochs]
        best_kept += best in [judged[i] for i in finishers]
        regret += best - max(judged[i] for i in finishers)
        chosen = sorted(finishers, key=lambda i: -objective[i])[:top_k]
        best_chosen += best in [judged[i] for i in chosen]
        chosen_regret += best - max(judged[i] for i in chosen)
    per_trial = spent / (orders * len(histories))
    return Replay(
        min_resource,
        reduction_factor,
        rungs(min_resource, reduction_factor, epochs),
        per_trial,
        epochs / per_trial,
        best_kept / orders,
        regret / orders,
        best_chosen / orders,
        chosen_regret / orders,
    )


SETTINGS = [(1, 2), (1, 3), (1, 4), (2, 2), (2, 3), (3, 3), (4, 3)]  # (min_resource, reduction_factor)

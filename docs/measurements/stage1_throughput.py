"""Stage-1 throughput of sweeps, read from their Optuna journals (README, "Found by search": the default search at
72e06b4 against 2126d08). Each argument is a sweep's launch directory (its optuna_journal.log). Prints per sweep:
trained trials (complete + pruned; rejected ones never train), epochs trained, study wall (the first trial's start
to the last one's end), trained trials and epochs per hour, and per dropout setting the median of a trial's seconds
per epoch (its whole duration, fixed cost included, over its epochs).

    python docs/measurements/stage1_throughput.py <launch dir>... [--study mnist_sweep-max_val_acc]
"""

import argparse
import statistics

import optuna

from optuna_sweeper.outcomes import Attr, Outcome, outcome_of
from optuna_sweeper.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
parser = argparse.ArgumentParser(description="Stage-1 throughput of sweeps, from their Optuna journals.")
parser.add_argument("launch_dirs", nargs="+", help="sweep launch directories (each holds optuna_journal.log)")
parser.add_argument("--study", default="mnist_sweep-max_val_acc", help="the stage-1 study's name")
args = parser.parse_args()
for d in args.launch_dirs:
    study = optuna.load_study(study_name=args.study, storage=open_storage(f"{d}/optuna_journal.log"))
    trials = [t for t in study.trials if t.datetime_complete]
    trained = [t for t in trials if outcome_of(t) in (Outcome.COMPLETE, Outcome.PRUNED)]
    wall = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    epochs = sum(len(t.intermediate_values) for t in trained)
    complete = sum(outcome_of(t) == Outcome.COMPLETE for t in trained)
    per_epoch = {}
    for t in trained:
        dropout = float(next(o for o in t.user_attrs[Attr.OVERRIDES] if o.startswith("model.dropout=")).split("=")[1])
        key = "dropout 0" if dropout == 0 else ("dropout <0.02" if dropout < 0.02 else "dropout >=0.02")
        n = len(t.intermediate_values)
        per_epoch.setdefault(key, []).append((t.datetime_complete - t.datetime_start).total_seconds() / n)
    rejected = sum(outcome_of(t) == Outcome.REJECTED for t in trials)
    print(
        f"{d}: trained {len(trained)} ({complete} complete + {len(trained) - complete} pruned), rejected {rejected}, "
        f"epochs {epochs}, study wall {wall:.0f} s, trained trials/h {3600 * len(trained) / wall:.0f}, "
        f"epochs/h {3600 * epochs / wall:.0f}"
    )
    for key, v in sorted(per_epoch.items()):
        print(f"   {key}: {len(v)} trials, trial seconds per epoch median {statistics.median(v):.2f}")

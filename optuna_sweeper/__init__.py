"""A generic Optuna (>= 5) sweeper for Hydra apps.

It knows nothing of the app it sweeps: the app configures it (search space, a parameter counter for the budget,
an exporter for the best trial) through `hydra.sweeper.*`. Hydra discovers it through the tiny plugin module
`hydra_plugins/optuna_sweeper/optuna_sweeper.py`, which imports this package only when a sweep starts, so a
plain run of the app never imports Optuna.

Modules, one job each:
  settings     checks and derived values of hydra.sweeper.* (directions, objectives, storage, study name)
  space        hydra.sweeper.params (Hydra's sweep syntax) <-> Optuna distributions and trial overrides
  outcomes     the vocabulary of trial states and user attrs, and the counts, all read from the study
  optuna_api   the few private Optuna/Hydra attributes this package needs, wrapped in one place
  storage      journal file or database URL -> an Optuna storage; redaction of passwords
  study        the study's lifecycle: open, sampler, pruner, warm start, requeue, dead-worker recovery
  budget       the parameter budget: count before training, reject over-budget trials as infeasible
  trials       the trial loop: ask, sample, budget, launch, tell
  workers      the extra worker processes of one sweep command
  summary      a pure summary of the study (counts, leaderboard, best trial, Pareto front)
  publish      the summary printed, written to the sweep dir, exported and logged to MLflow
  mlflow_runs  the sweep's parent MLflow run and its trials' child runs
  mlflow_store a fresh sqlite MLflow store created by one process at a time (an app's runs take the same flock)
  job          the job's side: report epochs to the trial and ask the pruner (used by the app's task)
  sweep        one sweep command from start to end, tying the above together
"""

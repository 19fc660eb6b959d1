"""custom_search_space hooks for the sweeper tests (importable because app.py's folder is on sys.path)."""


def epochs_for_small_models(cfg, trial):
    """Conditional space: only the smallest width searches its epoch count; every trial gets a fixed extra. The
    returned dict is the trial's overrides (define-by-run: a suggested param is an override only when returned)."""
    extra = {"epoch_seconds": 0.0}
    if trial.params["width"] == 4:
        extra["epochs"] = trial.suggest_int("epochs", 2, 3)
    return extra


def fail_in_workers(cfg, trial):
    """Breaks the worker processes the sweeper starts (hydra.sweeper.worker_id > 0), not the command itself."""
    if cfg.hydra.sweeper.worker_id:
        raise RuntimeError("this worker is broken on purpose")
    return None

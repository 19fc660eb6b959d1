"""An Optuna (>=5) sweeper for Hydra, shipped with mnist_sweep: `python -m mnist_sweep -m hydra/sweeper=optuna`.

Hydra finds it by walking the `hydra_plugins` namespace package; see docs/sweeps.md for the options."""

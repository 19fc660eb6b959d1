"""The Hydra plugin for the Optuna (>= 5) sweeper in the `optuna_sweeper` package: `hydra/sweeper=optuna`.

Hydra imports every module of this package on every app start, so it holds only the config schema and a thin
Sweeper class that imports the implementation (and Optuna) when a sweep actually starts."""

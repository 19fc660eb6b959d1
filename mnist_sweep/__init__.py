"""mnist_sweep: Hydra-composed MNIST training runs, Optuna architecture search, MLflow tracking."""

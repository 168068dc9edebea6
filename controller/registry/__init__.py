"""Registries: where prompt versions (and, on completion, model and prompt aliases) live. MLflow's only."""

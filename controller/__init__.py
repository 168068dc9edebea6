"""A GitOps rollout controller for LLM model and prompt changes."""

__version__ = "0.1.0"

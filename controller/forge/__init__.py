"""Forges: where the controller's pull requests live. One module per backend behind `base.Forge`."""

"""The reconciler's GitOps fixtures, for the end-to-end bad-input tests."""

from tests.reconcile.conftest import eval_prometheus, gitops  # noqa: F401

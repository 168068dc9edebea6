"""The reconciler's GitOps fixtures, for the security tests."""

from tests.reconcile.conftest import eval_prometheus, gitops  # noqa: F401

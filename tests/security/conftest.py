"""The reconciler's GitOps fixtures, for the security tests."""

from tests.helpers.gitops import eval_prometheus, gitops  # noqa: F401

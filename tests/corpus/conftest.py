"""The reconciler's GitOps fixtures, for the end-to-end bad-input tests."""

from tests.helpers.gitops import eval_prometheus, gitops  # noqa: F401

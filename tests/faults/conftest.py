"""Fixtures for the fault suite: the reconciler's real GitOps setup (a bare remote, the local forge,
the file router, a real Prometheus with backfilled evals; tests/helpers/gitops.py), and the table of
real kills (tests/helpers/faults.py) printed after the run."""

from __future__ import annotations

import pytest

from tests.helpers.faults import KILL_TABLE
from tests.helpers.gitops import eval_prometheus, gitops  # noqa: F401  (fixtures used by this suite)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The cut points and their outcomes, after the run, whatever the verbosity."""
    if not KILL_TABLE:
        return
    columns = [
        ("scenario", "scenario"),
        ("point", "killed at (SIGKILL)"),
        ("killed", "left by the kill"),
        ("restart", "after one restarted tick (same workdir)"),
        ("outcome", "outcome"),
    ]
    rows = [[row.get(key, "-") for key, _ in columns] for row in KILL_TABLE]
    widths = [max(len(title), *(len(r[i]) for r in rows)) for i, (_, title) in enumerate(columns)]
    terminalreporter.write_sep("-", "a real rollout run killed at each cut point, then restarted")
    for line in [[title for _, title in columns], ["-" * w for w in widths], *rows]:
        terminalreporter.write_line("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())

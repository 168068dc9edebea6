"""Fixtures for the `rollout` command's tests: a copy of the example repository on file routers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.examples import copy_examples


@pytest.fixture
def examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example repository, where every router is the embedded file router, its state
    beside the copy ($ROLLOUT_STATE_DIR)."""
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "repo"))
    return copy_examples(tmp_path)

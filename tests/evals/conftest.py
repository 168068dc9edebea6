"""Fixtures for the eval tests: a throwaway rollouts repository with the golden set, and the OpenAI
stand-in answering as the triage models do (tests/helpers/golden.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import golden, openai_standin


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return golden.write_repo(tmp_path / "repo")


@pytest.fixture
def server() -> Iterator[openai_standin.Standin]:
    with openai_standin.standin(answer=golden.triage) as s:
        yield s

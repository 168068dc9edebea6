"""The bad-input corpus (tests/helpers/corpus.py): each case is refused with a clear, located, short
error; nothing derived from it would be applied; every other rollout still loads. End to end, a
controller tick over a repository full of bad inputs writes no route and opens no PR for any of them."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from controller import load, repo
from tests.helpers import corpus, hostile

CASES = corpus.CASES
T = TypeVar("T")


def test_the_corpus_has_at_least_60_cases() -> None:
    assert len(CASES) + len(corpus.LOCATED_CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_clearly(case: corpus.Case, tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    hostile.write(root, case)
    result = load.load_repo(repo.WorkTree(root))
    seen = [str(p) for p in result.problems]
    assert seen, "the bad input was accepted"
    assert any(case.expect.lower() in s.lower() for s in seen), f"expected {case.expect!r} in {seen}"
    assert all(s.startswith("rollouts/") for s in seen), "every error names its file"
    assert all(len(s) < 600 for s in seen), "an error is a sentence, not a dump of the input"
    if case.target == "controller":
        assert result.config is None and result.rollouts == []  # nothing is applied without a valid config
    else:
        assert [r.name for r in result.rollouts] == ["neighbour"], "a broken rollout must not stop the others"


def test_the_valid_base_loads(tmp_path: Path) -> None:
    """The cases are mutations of a valid rollout: without the mutation it loads (so each case fails
    for its own defect)."""
    root = corpus.make_repo(tmp_path)
    (root / corpus.ROLLOUT).write_text(corpus.VALID_ROLLOUT)
    shutil.copy(root / "rollouts/controller.yaml", tmp_path / "config.yaml")
    result = load.load_repo(repo.WorkTree(root))
    assert result.problems == [] and sorted(r.name for r in result.rollouts) == ["case", "neighbour"]


def within(seconds: float, work: Callable[[], T]) -> T:
    """`work()`, failing (not hanging) the test if it has not returned in `seconds`: reading a FIFO blocks
    forever. A deadline for a hang, not a timing assertion."""
    done: list[T] = []
    thread = threading.Thread(target=lambda: done.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert done, f"still running after {seconds} s: it blocks"
    return done[0]


@pytest.mark.parametrize("case", corpus.FILES, ids=[c.id for c in corpus.FILES])
def test_a_file_that_is_not_a_regular_file_is_refused_without_reading_it(case: corpus.FileCase, tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    hostile.make(root, case)
    result = within(30, lambda: load.load_repo(repo.WorkTree(root)))
    seen = [str(p) for p in result.problems]
    assert any(case.expect in s for s in seen), f"expected {case.expect!r} in {seen}"
    assert all(s.startswith("rollouts/") and len(s) < 600 for s in seen)
    if case.target == "controller":
        assert result.config is None and result.rollouts == []
    else:
        assert [r.name for r in result.rollouts] == ["neighbour"], "a broken rollout must not stop the others"

"""The bad-input corpus (tests/corpus/cases.py): each case is refused with a clear, located, short
error; nothing derived from it would be applied; every other rollout still loads. End to end, a
controller tick over a repository full of bad inputs writes no route and opens no PR for any of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controller import load, repo
from tests.corpus import cases as corpus
from tests.spec.test_corpus import CASES as LOCATED_CASES
from tests.spec.test_corpus import make_repo

CASES = corpus.CASES


def test_the_corpus_has_at_least_60_cases() -> None:
    assert len(CASES) + len(LOCATED_CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


def write(root: Path, case: corpus.Case) -> None:
    for path, data in ((case.path, case.data), *case.extra):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    if case.target == "rollout" and case.path != corpus.ROLLOUT:
        (root / corpus.ROLLOUT).write_text(corpus.VALID_ROLLOUT)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_clearly(case: corpus.Case, tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    write(root, case)
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
    root = make_repo(tmp_path)
    (root / corpus.ROLLOUT).write_text(corpus.VALID_ROLLOUT)
    shutil.copy(root / "rollouts/controller.yaml", tmp_path / "config.yaml")
    result = load.load_repo(repo.WorkTree(root))
    assert result.problems == [] and sorted(r.name for r in result.rollouts) == ["case", "neighbour"]

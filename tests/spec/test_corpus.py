"""The invalid-spec corpus: each file in tests/corpus/invalid fails with the exact file:line:col and field.

Each case is dropped into a copy of tests/corpus/repo, next to a valid rollout, which must still load.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import load, repo
from tests.helpers import corpus


def test_corpus_is_large_enough() -> None:
    assert len(corpus.LOCATED_CASES) >= 25


@pytest.mark.parametrize("case", corpus.LOCATED_CASES, ids=[c.stem for c in corpus.LOCATED_CASES])
def test_invalid_file_is_located(case: Path, tmp_path: Path) -> None:
    text = case.read_text("utf-8", errors="surrogateescape")
    m = corpus.HEADER.match(text.splitlines()[0])
    assert m, f"{case.name}: first line must be '# expect: LINE:COL FIELD: MESSAGE'"
    root = corpus.make_repo(tmp_path)
    target = load.CONFIG_FILE if m["target"] == "controller" else "rollouts/case/rollout.yaml"
    (root / target).write_text(text, "utf-8", errors="surrogateescape")

    result = load.load_repo(repo.WorkTree(root))

    where = f"{target}:{m['line']}:{m['col']}" if m["line"] != "0" else target
    expected = f"{where}: {m['rest']}"
    seen = [str(p) for p in result.problems]
    assert any(s.startswith(expected) for s in seen), f"expected {expected!r}, got {seen}"
    if m["target"] != "controller":
        assert [r.name for r in result.rollouts] == ["neighbour"], "a broken rollout must not stop the others"

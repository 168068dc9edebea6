"""`atomic.read_document`: the one reader of the file, flagd and LiteLLM routers' state files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller import errors
from controller.routers import atomic

DOCUMENTS = [
    ("fine", '{"version": 2, "groups": {"chat": {}}}', None),
    ("no-key", '{"version": 2}', "has no 'groups' object"),
    ("key-not-an-object", '{"version": 2, "groups": []}', "has no 'groups' object"),
    ("not-an-object", "[]", "has no 'groups' object"),
    ("other-version", '{"version": 1, "groups": {}}', "has version 1, expected 2"),
    ("no-version", '{"groups": {}}', "has version None, expected 2"),
    ("not-json", '{"groups": ', "not valid JSON \\(line 1"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in DOCUMENTS], ids=[c[0] for c in DOCUMENTS])
def test_read_document(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    if message is None:
        assert atomic.read_document(path, router="r", key="groups", version=2) == {"version": 2, "groups": {"chat": {}}}
    else:
        with pytest.raises(errors.RouterStateError, match=message) as raised:
            atomic.read_document(path, router="r", key="groups", version=2)
        assert "router 'r'" in str(raised.value) and str(path) in str(raised.value)


def test_read_document_without_a_file_or_a_version(tmp_path: Path) -> None:
    assert atomic.read_document(tmp_path / "absent.json", router="r", key="flags") is None
    (tmp_path / "flags.json").write_text('{"flags": {}}')
    assert atomic.read_document(tmp_path / "flags.json", router="r", key="flags") == {"flags": {}}


def test_a_state_file_that_is_no_regular_file_is_refused_without_being_read(tmp_path: Path) -> None:
    """controller.yaml may point a router's state at any path: a FIFO would block the read forever (the
    whole tick, rollbacks included), /dev/zero would fill the memory. Neither is read."""
    fifo = tmp_path / "routes.json"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(errors.RouterStateError, match="is not a regular file"):
            atomic.read_json(path, router="r")


def test_a_state_file_nested_too_deeply_or_with_a_nul_in_its_path_is_an_error_not_a_crash(tmp_path: Path) -> None:
    deep = tmp_path / "routes.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(errors.RouterStateError, match="nested too deeply"):
        atomic.read_json(deep, router="r")
    with pytest.raises(errors.RouterUnavailable, match="cannot read"):
        atomic.read_json(tmp_path / "a\0b", router="r")

"""Round-trip edits of a rollout file's text (its `status` block, the completion and decommission
edits of `spec`) that keep every other byte: comments, order and layout. Pure: text in, text out, no
git and no I/O: the file a controller's pull request changes is written with these.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from controller import errors


def dump_yaml(data: Any) -> str:
    """Round-trip YAML text of a tree (comments a loaded tree carries are kept), block style."""
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _top_level_block(text: str, key: str) -> tuple[int, int] | None:
    """The line range [start, end) of a top-level key and its value, or None if absent."""
    doc = _yaml_load(text)
    if not isinstance(doc, CommentedMap) or key not in doc:
        return None
    start = doc.lc.key(key)[0]
    later = [doc.lc.key(k)[0] for k in doc if doc.lc.key(k)[0] > start]
    lines = text.splitlines(keepends=True)
    end = min(later) if later else len(lines)
    # blank lines and comments just above the next key belong to that key
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return start, end


def _yaml_load(text: str) -> Any:
    yaml = YAML(typ="rt")
    return yaml.load(text)


def set_status(text: str, status: Mapping[str, Any]) -> str:
    """The rollout file with its `status` block replaced (or appended); every other byte is kept."""
    block = dump_yaml({"status": _plain_data(status)})
    lines = text.splitlines(keepends=True)
    span = _top_level_block(text, "status")
    if span is None:
        if text and not text.endswith("\n"):
            text += "\n"
        return text + block
    start, end = span
    first = lines[start]
    if first.split("#", 1)[0].strip() == "status:" and "#" in first:  # keep a comment on the key's line
        block = first + block.split("\n", 1)[1]
    return "".join(lines[:start]) + block + "".join(lines[end:])


def _plain_data(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain_data(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain_data(v) for v in value]
    return value


def _spec_entry(text: str, key: str) -> tuple[int, int] | None:
    """The line range [start, end) of `spec.<key>` (the key's line and its value's lines)."""
    doc = _yaml_load(text)
    spec_map = doc.get("spec") if isinstance(doc, CommentedMap) else None
    if not isinstance(spec_map, CommentedMap) or key not in spec_map:
        return None
    start = spec_map.lc.key(key)[0]
    later = [spec_map.lc.key(k)[0] for k in spec_map if spec_map.lc.key(k)[0] > start]
    top = [doc.lc.key(k)[0] for k in doc if doc.lc.key(k)[0] > start]
    lines = text.splitlines(keepends=True)
    end = min(later + top) if later or top else len(lines)
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return start, end


def promote_canary(text: str) -> str:
    """The completion edit: the canary becomes `stable`, the old stable becomes `previous` (kept warm),
    and `canary` goes. Only those entries change; the rest of the file is kept byte for byte."""
    stable, canary = _spec_entry(text, "stable"), _spec_entry(text, "canary")
    if stable is None or canary is None:
        raise errors.RepoError("the rollout has no spec.stable and spec.canary to promote")
    lines = text.splitlines(keepends=True)
    old_stable = _rename(lines[stable[0] : stable[1]], "stable", "previous")
    new_stable = _rename(lines[canary[0] : canary[1]], "canary", "stable")
    out = list(lines)
    previous = _spec_entry(text, "previous")
    # replace from the bottom up so earlier line numbers stay valid
    edits = sorted(
        [(stable, new_stable), (canary, old_stable)] + ([(previous, [])] if previous else []),
        key=lambda e: e[0][0],
        reverse=True,
    )
    for (start, end), replacement in edits:
        out[start:end] = replacement
    return "".join(out)


def drop_previous(text: str) -> str:
    """The decommission edit: remove `spec.previous`."""
    span = _spec_entry(text, "previous")
    if span is None:
        return text
    lines = text.splitlines(keepends=True)
    return "".join(lines[: span[0]] + lines[span[1] :])


def _rename(lines: list[str], old: str, new: str) -> list[str]:
    first = lines[0]
    head, sep, rest = first.partition(f"{old}:")
    if not sep or head.strip():
        raise errors.RepoError(f"cannot rename spec.{old}: unexpected layout {first.strip()!r}")
    return [f"{head}{new}:{rest}", *lines[1:]]

"""Locked, atomic JSON files: how the file, flagd and LiteLLM routers keep their state; and the YAML
that `rollout render` writes for Envoy and LiteLLM.

A writer takes an advisory lock on `<file>.lock`, writes a temp file beside the target, fsyncs it and
renames it over the old one, so readers never see half a file and two writers never lose each other's
routes. A writer killed before its rename leaves its temp file (`.<file>.tmp-*`, which no reader opens);
the next writer, under the lock, removes it, so they never pile up. Files are created readable by
others (0644): the application or proxy that reads them may run as another user.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import io
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from controller import cutpoints, errors

_TEMP = ".{name}.tmp-"  # the prefix of a writer's temp file beside `name`


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the advisory lock of `path` for the block."""
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def replace_json(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path` atomically (temp file, fsync, rename). Call it holding
    `locked(path)`: the temp files it finds beside `path` are then a dead writer's, and it removes them."""
    prefix = _TEMP.format(name=path.name)
    for stale in path.parent.glob(f"{glob.escape(prefix)}*"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        cutpoints.reached(cutpoints.STATE_TEMP)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


MAX_STATE_BYTES = 256 << 20  # a state file larger than this is not one we wrote


def read_json(path: Path, *, router: str) -> Any:
    """The JSON in `path`, or None when there is no such file. A file that cannot be read raises
    RouterUnavailable; one that is not JSON, not a regular file (a FIFO would block the read forever,
    /dev/zero never end it) or larger than MAX_STATE_BYTES, RouterStateError naming the line or the kind."""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise errors.RouterStateError(
                    f"router {router!r}: {path} is not a regular file; nothing is read from it"
                )
            data = f.read(MAX_STATE_BYTES + 1)
        text = data.decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path, or not UTF-8
        raise errors.RouterUnavailable(f"router {router!r}: cannot read {path}: {exc}") from exc
    if len(data) > MAX_STATE_BYTES:
        raise errors.RouterStateError(f"router {router!r}: {path} is larger than {MAX_STATE_BYTES >> 20} MiB")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.RouterStateError(
            f"router {router!r}: {path} is not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from exc
    except RecursionError as exc:
        raise errors.RouterStateError(f"router {router!r}: {path} is nested too deeply to be ours") from exc


def read_document(path: Path, *, router: str, key: str, version: int | None = None) -> dict[str, Any] | None:
    """The JSON object in `path` (None when there is no such file), refused with RouterStateError
    unless its `key` is an object and, when `version` is given, its `version` is that one."""
    data = read_json(path, router=router)
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise errors.RouterStateError(f"router {router!r}: {path} has no {key!r} object")
    if version is not None and data.get("version") != version:
        raise errors.RouterStateError(
            f"router {router!r}: {path} has version {data.get('version')!r}, expected {version}"
        )
    return data


def to_yaml(document: Mapping[str, Any]) -> str:
    """A rendered configuration as block-style YAML, keys in the order they were built."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    out = io.StringIO()
    yaml.dump(dict(document), out)
    return out.getvalue()

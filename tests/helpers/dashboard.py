"""The dashboard's pages served by a real `rollout` process (`rollout dashboard`, or `rollout run
--metrics-port`), started through `procs` and stopped by its handle; and the PNG reading that the
screenshot test uses to tell a drawn page from a blank one."""

from __future__ import annotations

import contextlib
import os
import re
import struct
import sys
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from tests.helpers import procs

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def serving(command: Sequence[str], *, log: Path, ready_path: str = "/api/rollouts.json") -> Iterator[str]:
    """`python -m controller COMMAND...` until the block ends; yields its base URL once `ready_path`
    answers 200 with rollouts in it (the port it printed: `--port 0` picks a free one)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with procs.running([sys.executable, "-m", "controller", *command], log=log, env=env) as process:

        def url() -> str | None:
            found = re.search(r"dashboard on (http://[^\s/]+)/", log.read_text(errors="replace"))
            return found.group(1) if found else None

        base = procs.ready(process, "the dashboard's address", url, log=log, deadline=60)

        def answered() -> bool:
            r = httpx.get(base + ready_path, timeout=5)
            return r.status_code == 200 and bool(r.json().get("rollouts"))

        procs.ready(process, "the dashboard's first look", answered, log=log, deadline=90, every=0.2,
                    tolerate=(httpx.HTTPError, ValueError))  # fmt: skip
        yield base


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """(width, height, RGB pixels) of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium's
    screenshots are): the five filters of the PNG spec undone, in pure Python."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, head = 8, b"", b""
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]
        if kind == b"IHDR":
            head = body
        elif kind == b"IDAT":
            chunks += body
        pos += 12 + size
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", head)
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unexpected PNG: depth {depth}, colour {colour}"
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(chunks), width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(line)
        previous = line
    pixels = [tuple(row[x * channels : x * channels + 3]) for row in rows for x in range(width)]
    return width, height, pixels

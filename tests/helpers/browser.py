"""A real browser for the dashboard's tests: Debian's Chromium, driven by PyPI's playwright.

No browser is downloaded (none can be here, and none is needed): playwright launches the system's
`/usr/bin/chromium` (`.ci/run` installs Debian's `chromium`). The flags are the ones this machine's
closed network needs: without the background-networking ones Chromium keeps dialling Google's hosts.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str:
    """Debian's Chromium, or an AssertionError that says how to install it (never a silent skip)."""
    found = shutil.which("chromium") or (CHROMIUM if shutil.which(CHROMIUM) else None)
    assert found, "Debian's chromium is not installed: `apt-get install chromium` (.ci/run does)"
    return found


@contextmanager
def page(*, width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A fresh headless page in a fresh browser (its own empty profile), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=list(FLAGS))
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            yield context.new_page()
            context.close()
        finally:
            browser.close()

"""flagd's own checks, for the tests of the flags router: the upstream flag schema (as JSON Schema, in
tests/routers/flagd-flags.schema.json) and flagd's JavaScript core run by Node (`tests/helpers/flagd_*.js`;
`bash .ci/run` installs the package in tests/.node)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((TESTS / "routers" / "flagd-flags.schema.json").read_text("utf-8"))
FLAGD_CORE_JS = TESTS / ".node/node_modules/@openfeature/flagd-core"


def run_js(script: str, payload: Any) -> list[Any]:
    """`tests/helpers/<script>` with flagd's JavaScript core, `payload` as JSON on stdin, its JSON answer."""
    node = shutil.which("node")
    if node is None or not FLAGD_CORE_JS.is_dir():
        pytest.skip("needs node and @openfeature/flagd-core in tests/.node (bash .ci/run installs them)")
    run = subprocess.run(
        [node, str(TESTS / "helpers" / script), str(FLAGD_CORE_JS)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answers: list[Any] = json.loads(run.stdout)
    return answers


def upstream_errors(documents: list[Any]) -> list[str | None]:
    """Each document through the JavaScript flagd core's strict parser (the upstream flag schema):
    None where it is accepted, else the parser's error."""
    return run_js("flagd_check.js", documents)

"""`.ci/venv.sh`, sourced by .ci/run and .ci/demo before they `pip install`: on an externally managed
Python (PEP 668, a stock Debian Python) and outside a virtual environment it makes `.venv` once and
activates it; inside a virtual environment, or on a Python that lets pip install, it changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_PYTHON = Path("/usr/bin/python3")


def externally_managed(python: Path) -> bool:
    stdlib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    return (Path(stdlib) / "EXTERNALLY-MANAGED").exists()


def sourced(checkout: Path, path: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """(the python3 on PATH after sourcing .ci/venv.sh under `set -euo pipefail`, what it said)."""
    shutil.copytree(ROOT / ".ci", checkout / ".ci", dirs_exist_ok=True)
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail; . .ci/venv.sh; command -v python3"],
        cwd=checkout, env={"PATH": path, "HOME": str(checkout), **(env or {})},
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return result.stdout.strip(), result.stderr


@pytest.mark.skipif(
    not DEBIAN_PYTHON.exists() or not externally_managed(DEBIAN_PYTHON), reason="no externally managed python3 here"
)
def test_an_externally_managed_python_gets_a_venv_in_the_checkout_once(tmp_path: Path) -> None:
    path = f"{DEBIAN_PYTHON.parent}:/bin"
    python, said = sourced(tmp_path, path)
    assert python == str(tmp_path / ".venv" / "bin" / "python3") and "externally managed" in said
    made = (tmp_path / ".venv" / "pyvenv.cfg").stat().st_mtime_ns
    assert sourced(tmp_path, path)[0] == python  # the next run uses it, unchanged
    assert (tmp_path / ".venv" / "pyvenv.cfg").stat().st_mtime_ns == made
    # inside that virtual environment (as .ci/demo is when .ci/run calls it), nothing changes
    inside = tmp_path / "inside"
    inside.mkdir()
    venv_env = {"VIRTUAL_ENV": str(tmp_path / ".venv")}
    assert sourced(inside, f"{tmp_path / '.venv' / 'bin'}:{path}", venv_env) == (python, "")
    assert not (inside / ".venv").exists()


@pytest.mark.skipif(
    (Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").exists(), reason="this python3 is externally managed"
)
def test_a_python_that_lets_pip_install_is_used_as_it_is(tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    python, said = sourced(tmp_path, f"{bindir}:{os.environ['PATH']}")
    assert not (tmp_path / ".venv").exists() and said == ""
    assert Path(python).parent == bindir

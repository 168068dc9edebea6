"""The dashboard's static files: each vendored file is the one VENDORED.md names (its sha256), the
package ships them, and plots.js builds its DOM without HTML strings (what the browser test cannot see:
an HTML string is no CSP violation, only a way for a value to become markup)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

import controller.dashboard

STATIC = Path(controller.dashboard.__file__).parent / "static"
ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", re.MULTILINE)


def vendored() -> dict[str, str]:
    return dict(ROW.findall((STATIC / "VENDORED.md").read_text("utf-8")))


def test_vendored_md_names_every_vendored_file() -> None:
    ours = {"plots.js", "dashboard.css", "favicon.svg", "VENDORED.md"}
    assert sorted(vendored()) == sorted(f.name for f in STATIC.iterdir() if f.name not in ours)
    assert sorted(vendored()) == ["uplot.LICENSE", "uplot.iife.min.js", "uplot.min.css"]


@pytest.mark.parametrize("name", sorted(vendored()))
def test_a_vendored_file_is_the_one_vendored_md_names(name: str) -> None:
    assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == vendored()[name]


def test_the_vendored_uplot_is_the_version_vendored_md_names() -> None:
    head = (STATIC / "uplot.iife.min.js").read_text("utf-8")[:100]
    assert head.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert "| 1.6.32 |" in (STATIC / "VENDORED.md").read_text("utf-8")


def test_the_package_ships_the_static_files() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "static/*" in data["controller.dashboard"]


#: Ways a string becomes markup or code in a page: plots.js uses none of them.
HTML_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(", "setAttribute")


@pytest.mark.parametrize("sink", HTML_SINKS)
def test_plots_js_builds_its_dom_without_html_strings(sink: str) -> None:
    assert sink not in (STATIC / "plots.js").read_text("utf-8")


def test_plots_js_parses() -> None:
    result = subprocess.run(["node", "--check", str(STATIC / "plots.js")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr

"""Start-up: `rollout --help` builds only the parser, and `rollout validate` loads what validating needs
(pydantic, YAML), never git, HTTP clients, rich or the statistics libraries. Checked by what Python
imports (`-X importtime`), not by timing: `bench/startup.py` measures the time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.examples import ROOT

HEAVY = ("httpx", "git", "github3", "prometheus_api_client", "prometheus_client", "requests", "urllib3", "rich")
HEAVY += ("numpy", "scipy", "litellm", "jsonschema")
SPEC = ("pydantic", "ruamel")  # the spec models and YAML: validating needs them, a parser does not


def _imports(*args: str) -> dict[str, list[str]]:
    """Each top-level package that `python -X importtime ARGS` imports (stdout a pipe), with the chain
    of modules that first imported it: {"git": ["git", "controller.repo", "controller.cli.common", ...]}."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    rows = []  # (depth, module), children before their importer, as -X importtime prints them
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            name = line.split("|")[2]
            rows.append((len(name) - len(name.lstrip()), name.strip()))
    chains: dict[str, list[str]] = {}
    for i, (depth, name) in enumerate(rows):
        top = name.split(".")[0]
        if top in chains:
            continue
        chain, level = [name], depth
        for up_depth, up in rows[i + 1 :]:
            if up_depth < level:
                chain.append(up)
                level = up_depth
        chains[top] = chain[chain.index(top) :] if top in chain else chain
    return chains


def _loaded(chains: dict[str, list[str]], names: tuple[str, ...]) -> list[str]:
    return [" <- ".join(chains[n]) for n in names if n in chains]


def test_help_imports_no_command_s_dependencies() -> None:
    found = _imports("-m", "controller", "--help")
    assert "argparse" in found  # the probe sees imports at all
    loaded = _loaded(found, HEAVY + SPEC)
    assert not loaded, (
        "`rollout --help` builds only the parser: a command module imports at its top only argparse, the "
        "standard library and controller.cli.common, and the rest inside its cmd_* functions (`if "
        "TYPE_CHECKING:` for annotations). Imported now:\n" + "\n".join(loaded)
    )


def test_every_command_s_help_imports_no_command_s_dependencies() -> None:
    """Building the whole parser and every command's help, as `rollout COMMAND --help` does."""
    found = _imports(
        "-c",
        "from controller import cli\n"
        "from tests.helpers import parsers\n"
        "for _path, p in parsers.commands(cli.parser()):\n"
        "    p.format_help()\n",
    )
    assert "controller" in found
    loaded = _loaded(found, HEAVY + SPEC)
    assert not loaded, "building `rollout`'s parser imports (move these into the cmd_* functions):\n" + "\n".join(
        loaded
    )


@pytest.mark.parametrize("args", [("rollouts/support-bot",), ("rollouts",), ("--format", "json", "rollouts")])
def test_validate_imports_only_what_validating_needs(args: tuple[str, ...]) -> None:
    found = _imports("-m", "controller", "validate", *args)
    assert "pydantic" in found and "controller" in found  # it did validate
    loaded = _loaded(found, HEAVY)
    assert not loaded, "`rollout validate` imports (move these where they are used):\n" + "\n".join(loaded)

"""The `rollout` command's parsers, walked: every command and subcommand with its argparse parser.

Used by tests/cli/test_help.py (help texts, defaults, examples) and tests/cli/test_startup.py."""

from __future__ import annotations

import argparse
from collections.abc import Iterator


def commands(parser: argparse.ArgumentParser, path: str = "rollout") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(the command as typed, e.g. "rollout pr show", its parser) for `parser` and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, f"{path} {name}")

"""Help texts: every option and argument of every command says what it is for, an option that takes a
value shows its default (never `None`), and every command's --help ends with one example that parses."""

from __future__ import annotations

import argparse
import shlex

import pytest

from controller import cli, contract, spec
from controller.cli import common, doctor
from tests.helpers import parsers

COMMANDS = dict(parsers.commands(cli.parser()))


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    skip = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    return [a for a in p._actions if not isinstance(a, skip)]


def _name(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or str(action.metavar or action.dest)


def _example(p: argparse.ArgumentParser) -> str | None:
    lines = (p.epilog or "").splitlines()
    return lines[1].strip() if len(lines) == 2 and lines[0] == "example:" else None


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_shows_its_default(command: str) -> None:
    p = COMMANDS[command]
    assert p.formatter_class is common.HelpFormatter, f"{command}: build it with common.Parser (add_subparsers does)"
    formatter = p._get_formatter()
    for action in _options(p):
        where = f"`{command}` {_name(action)}"
        assert action.help, f"{where} has no help: add help='what it is for' to its add_argument"
        shown = formatter._expand_help(action)
        assert "None" not in shown, f"{where} shows None: say its default in the help, e.g. '(default: $ENV_VAR)'"
        takes_value = action.nargs != 0
        if action.option_strings and takes_value and not action.required:
            assert "default" in shown, (
                f"{where} takes a value but its help does not say what happens without it: give it a "
                "default=, or end its help with '(default: ...)' in words"
            )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_s_help_ends_with_an_example_that_parses(command: str) -> None:
    p = COMMANDS[command]
    example = _example(p)
    assert example, f'`{command} --help` has no example: add epilog=common.example("{command} ...") to its parser'
    assert p.format_help().rstrip().endswith(example)
    words = shlex.split(example)
    assert " ".join(words[: len(command.split())]) == command, f"{command}'s example runs another command: {example}"
    try:
        cli.parser().parse_args(words[1:])
    except SystemExit:
        pytest.fail(f"{command}'s example does not parse: {example}")


def test_run_shows_its_interval_s_default() -> None:
    assert "(default: 10s)" in " ".join(COMMANDS["rollout run"].format_help().split())


def test_a_default_from_the_environment_is_named_not_shown_as_none() -> None:
    text = " ".join(COMMANDS["rollout status"].format_help().split())
    assert "(default: $ROLLOUT_REMOTE)" in text and "None" not in text


def test_doctor_s_default_window_is_the_contract_s() -> None:
    assert spec.parse_duration(doctor.DEFAULT_WINDOW) == contract.WINDOW

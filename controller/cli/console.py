"""Colour or plain: the one place `rollout` decides. On a terminal a command's text goes through rich
(verdicts, phases, decisions and severities in colour; tables; live views), with `$NO_COLOR` honoured
by rich; anywhere else (a pipe, a file, a test's StringIO) it is the plain text, byte for byte, and
rich is never imported."""

from __future__ import annotations

import argparse
import functools
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO, cast

if TYPE_CHECKING:
    from rich.console import Console

Command = Callable[[argparse.Namespace, TextIO], int]

STYLES = {  # word -> style; the words are the verdicts, phases, decisions and severities commands print
    "PASS": "bold green",
    "FAIL": "bold red",
    "ERROR": "bold magenta",
    "INCONCLUSIVE": "yellow",
    "Progressing": "cyan",
    "Paused": "yellow",
    "RolledBack": "red",
    "Completed": "green",
    "Rollback": "bold red",
    "Pause": "yellow",
    "Advance": "green",
    "Complete": "green",
    "error": "red",
    "warning": "yellow",
    "ROLLBACK NOT CONFIRMED": "bold red",
}


class Coloured(io.TextIOBase):
    """A terminal as a text stream: each complete line is printed through rich with the words of
    STYLES coloured; the text itself is unchanged (no wrapping, no markup, no emoji codes)."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.highlighter import RegexHighlighter
        from rich.theme import Theme

        words = sorted(STYLES, key=len, reverse=True)
        names = {word: f"w{i}" for i, word in enumerate(words)}

        class Words(RegexHighlighter):
            base_style = "rollout."
            highlights = [rf"(?<![\w-])(?P<{names[w]}>{w})(?![\w-])" for w in words]

        theme = Theme({f"rollout.{names[w]}": STYLES[w] for w in words})
        self.console: Console = Console(
            file=out, theme=theme, highlighter=Words(), markup=False, emoji=False, soft_wrap=True
        )
        self._out = out
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self.console.print(line)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self.console.print(self._partial, end="")
            self._partial = ""
        self._out.flush()

    def isatty(self) -> bool:
        return True


def terminal(out: TextIO) -> Console | None:
    """The rich console of a command's output when it is a terminal (see `coloured`), else None: print
    plain text."""
    return out.console if isinstance(out, Coloured) else None


def coloured(command: Command) -> Command:
    """A command whose text output is coloured on a terminal: it gets a `Coloured` stream there, its
    own `out` everywhere else."""

    @functools.wraps(command)
    def run(args: argparse.Namespace, out: TextIO) -> int:
        if not out.isatty():
            return command(args, out)
        terminal = Coloured(out)
        try:
            return command(args, cast(TextIO, terminal))
        finally:
            terminal.flush()

    return run

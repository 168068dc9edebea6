"""Safe PromQL building: escaped string literals, regex alternations, matchers injected into validated
selectors, and `{{placeholder}}` filling. Pure; `controller.templates` compiles gate queries with it.

Every value that goes into a query passes through `string()` (a PromQL double-quoted literal, Go
escapes) or is a validated label name or duration, so a quote, backslash or newline in a value can
never end a string early and change the query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from controller import spec

_LABEL = re.compile(spec.LABEL_NAME)
_SELECTOR = re.compile(spec.SELECTOR_PATTERN)
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_REGEX_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class QueryError(ValueError):
    """A value or template that cannot be put into a query safely."""


def string(value: str) -> str:
    """A PromQL double-quoted string literal whose content is exactly `value`."""
    out = []
    for ch in value:
        if ch in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def regex_literal(value: str) -> str:
    """An RE2 pattern matching exactly `value` (before string escaping)."""
    return _REGEX_SPECIAL.sub(r"\\\1", value)


def one_of(values: Iterable[str]) -> str:
    """An RE2 pattern (still to be quoted with `string()`) matching exactly one of `values`."""
    items = sorted(set(values))
    if not items:
        raise QueryError("an alternation needs at least one value")
    return "(?:" + "|".join(regex_literal(v) for v in items) + ")"


def label(name: str) -> str:
    if not _LABEL.fullmatch(name):
        raise QueryError(f"{name!r} is not a Prometheus label name")
    return name


def matcher(name: str, op: str, value: str) -> str:
    if op not in ("=", "!=", "=~", "!~"):
        raise QueryError(f"{op!r} is not a label matcher operator")
    return f"{label(name)}{op}{string(value)}"


def with_matchers(selector: str, matchers: Iterable[str]) -> str:
    """`metric{a="b"}` + [`c="d"`] -> `metric{a="b",c="d"}`; the selector must be a plain one."""
    if not _SELECTOR.fullmatch(selector):
        raise QueryError(f"{selector!r} is not a plain series selector")
    extra = ",".join(matchers)
    text = selector.strip()
    if not text.endswith("}"):
        return f"{text}{{{extra}}}"
    body = text[text.index("{") + 1 : -1].strip().rstrip(",")
    head = text[: text.index("{")].strip()
    return f"{head}{{{body + ',' if body else ''}{extra}}}"


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace `{{name}}` placeholders; an unknown placeholder is an error, never left in the query."""

    def one(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise QueryError(f"unknown placeholder {{{{{m.group(1)}}}}}; known: {', '.join(sorted(values))}")
        return values[m.group(1)]

    return _PLACEHOLDER.sub(one, template)


def tag(expr: str, name: str, value: str) -> str:
    """Set a constant label on every series of `expr` (label_replace on an empty source label)."""
    return f"label_replace({expr}, {string(label(name))}, {string(value)}, {string('')}, {string('')})"

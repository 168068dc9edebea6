"""Plain advice for a spec that does not parse or validate: what a YAML structure error means in the
user's own lines, and where a misplaced key belongs. Pure; `controller.load` calls it when it words
an error, so `rollout validate`, `plan` and the controller say the same thing."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from typing import Any, NamedTuple

from pydantic import BaseModel

EXCERPT_WIDTH = 120  # characters of a source line shown under an error; a longer line is cut around its column
MAX_EXCERPT = 2000  # characters of the line an error carries at most; a longer line is not carried


class Structure(NamedTuple):
    """A YAML parser error in plain words: the advice ("" when none fits) and where to point (0-based),
    which is the parser's own position unless the advice names a better one (an unclosed quote's start)."""

    advice: str
    line: int
    column: int


_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")  # what ruamel's reader counts as a line break


def lines(text: str) -> list[str]:
    """The lines of a file as the YAML parser numbers them."""
    return _BREAK.split(text)


def excerpt(lines: Sequence[str], line: int) -> str:
    """The 1-based `line` of the file, or "" when there is none (the end of the stream) or it is longer
    than MAX_EXCERPT (a hostile file's one huge line is not carried in every report)."""
    return lines[line - 1] if 0 < line <= len(lines) and len(lines[line - 1]) <= MAX_EXCERPT else ""


def window(source: str, column: int) -> tuple[str, int]:
    """`source` cut to EXCERPT_WIDTH characters around the 1-based `column`: (text, column in text)."""
    if len(source) <= EXCERPT_WIDTH:
        return source, column
    start = max(0, min(column - 1 - EXCERPT_WIDTH // 2, len(source) - EXCERPT_WIDTH))
    text = source[start : start + EXCERPT_WIDTH]
    column -= start
    if start:
        text, column = "…" + text, column + 1
    if start + EXCERPT_WIDTH < len(source):
        text += "…"
    return text, column


# -- YAML structure errors -------------------------------------------------------------------------

_KEY = re.compile(r"^(\s*)(-\s+)?((?:\"[^\"]*\"|'[^']*'|[^\s#:'\"][^:#]*?))\s*:(?:\s|$)")
_NO_SPACE = re.compile(r"^\s*(?:-\s+)?([A-Za-z_][\w.-]*):(\S.*)$")
_CLOSERS = {"flow sequence": ("[", "]"), "flow mapping": ("{", "}")}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _previous(lines: Sequence[str], index: int) -> int | None:
    """The 0-based index of the last line before `index` that holds something (not blank, not a comment)."""
    return next((i for i in range(min(index, len(lines)) - 1, -1, -1) if _content(lines[i])), None)


def _cut(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _missing_space(line: str) -> str:
    """Advice when a line reads `key:value`, a key without the space that makes it one, else ""."""
    gap = _NO_SPACE.match(line)
    if not gap or ": " in line or "://" in line:
        return ""
    return (
        f"`{gap.group(1)}:{_cut(gap.group(2))}` needs a space after the colon (`{gap.group(1)}: {_cut(gap.group(2))}`)"
    )


def _what(line: str, *, key: bool = False) -> str:
    """How advice names what a line holds: its key, or (unless `key`) its list item."""
    stripped = line.strip()
    m = _KEY.match(line)
    if stripped.startswith("-") and not (key and m):
        return f"the list item `{_cut(stripped)}`"
    return f"`{m.group(3)}`" if m else f"`{_cut(stripped)}`"


def _key_column(line: str) -> int:
    """The column of a line's key: after the `- ` of a list item that opens a mapping."""
    m = _KEY.match(line)
    return len(m.group(1)) + len(m.group(2) or "") if m else _indent(line)


def _spaces(n: int) -> str:
    return f"{n} space{'s' if n != 1 else ''}"


def structure(
    lines: Sequence[str], *, problem: str, line: int, column: int, context: str, context_line: int, context_column: int
) -> Structure:
    """Advice for a YAML parser error (its problem and 0-based mark, and its context and the context's
    mark, -1 when absent), derived from the lines around it."""
    here = Structure("", line, column)
    current = lines[line] if 0 <= line < len(lines) else ""
    if "cannot start any token" in problem and "\\t" in problem:
        if not current[:column].strip():
            return Structure("a tab indents this line: YAML indents with spaces only", line, column)
        return Structure("a tab separates here: YAML separates with spaces only", line, column)
    if "quoted scalar" in context and "end of stream" in problem and context_line >= 0:
        quote = lines[context_line][context_column : context_column + 1] if context_line < len(lines) else '"'
        return Structure(
            f"the string opened with `{quote}` here is never closed: end it with `{quote}`",
            context_line,
            context_column,
        )
    for kind, (opener, closer) in _CLOSERS.items():
        if kind in context and problem.startswith("expected ',' or") and context_line >= 0:
            if context_line != line and not any(
                closer in lines[i] for i in range(context_line, min(line + 1, len(lines)))
            ):
                return here._replace(
                    advice=f"the `{opener}` opened on line {context_line + 1} is never closed: end it with `{closer}`"
                )
            return here._replace(
                advice=f"a `,` is missing before this (between two items of the `{opener}` on line {context_line + 1})"
            )
    before = _previous(lines, line)
    if "simple key" in context and context_line >= 0:  # `route:chat` read as the start of a key
        before = context_line
    no_key = problem.startswith(("mapping values are not allowed", "could not find expected ':'"))
    if no_key and before is not None and (gap := _missing_space(lines[before])):
        return Structure(gap, before, lines[before].index(":") + 1)
    if problem.startswith("mapping values are not allowed"):
        if re.search(r":\s", current[:column]):
            m = _KEY.match(current)
            outer, inner = (m.group(3), current[m.end() :].strip()) if m else ("its key", current.strip())
            return here._replace(
                advice=f"`{_cut(inner)}` cannot be the value of `{outer}` on the same line: put it on a line of its"
                f" own, indented under `{outer}`, or quote the value"
            )
        if before is not None:
            deeper, above = _indent(current), _key_column(lines[before])
            if deeper > above:
                return Structure(
                    f"{_what(current, key=True)} is indented deeper than {_what(lines[before], key=True)} on line {before + 1}"
                    f" ({_spaces(deeper)}, not {above}): a key beside it takes its indentation",
                    line,
                    deeper,
                )
        return here
    if problem.startswith("expected <block end>") and before is not None:
        previous = lines[before]
        for number, text in ((line, current), (before, previous)):
            if dash := re.match(r"^\s*-([^\s-].*)$", text):
                return Structure(f"`-{_cut(dash.group(1))}` needs a space after the dash", number, _indent(text) + 1)
        if problem.endswith("'<scalar>'") and previous.count('"') % 2:
            return here._replace(advice=f'the `"` on line {before + 1} is never closed: end its string with `"`')
        now, then = _indent(current), _indent(previous)
        if now < then:
            return here._replace(
                advice=f"{_what(current)} is indented less than {_what(previous)} on line {before + 1}"
                f" ({_spaces(now)}, not {then}): line them up"
            )
        if now > then:
            return here._replace(
                advice=f"{_what(current)} is indented deeper than {_what(previous)} on line {before + 1}"
                f" ({_spaces(now)}, not {then}): line them up"
            )
        if current.lstrip().startswith("-"):
            return here._replace(
                advice=f"a list item cannot sit beside {_what(previous)} in a mapping: put the list under a key of its own"
                " (`key:` alone on a line) and indent it"
            )
    return here


# -- misplaced keys ----------------------------------------------------------------------------------

_LIST, _MAP = "[]", "<name>"  # how a placement names an item of a list, or a value of a mapping by name


def _members(annotation: Any) -> list[Any]:
    """The types an annotation stands for: Annotated and unions unwrapped, None dropped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [] if annotation is type(None) else [annotation]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """A model's fields as YAML spells them -> their annotations."""
    return {info.alias or name: info.annotation for name, info in model.model_fields.items()}


def _tags(model: type[BaseModel]) -> set[str]:
    """The values of a model's Literal fields: the tags that pick it out of a discriminated union."""
    return {
        str(v)
        for annotation in _fields(model).values()
        if typing.get_origin(annotation) is typing.Literal
        for v in typing.get_args(annotation)
    }


def _inside(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The models one level inside a field's type, each with how a path names the step into it: "" for
    the field itself, `[]` for an item of a list, `<name>` for a value of a mapping."""
    out: list[tuple[str, type[BaseModel]]] = []
    for tp in _members(annotation):
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if _is_model(tp):
            out.append(("", tp))
        elif origin is list and args:
            out += [(_LIST, m) for m in _members(args[0]) if _is_model(m)]
        elif origin is dict and len(args) == 2:
            out += [(_MAP, m) for m in _members(args[1]) if _is_model(m)]
    return out


_Level = tuple[tuple[str | int, ...], list[type[BaseModel]]]


def _levels(root: type[BaseModel], loc: Sequence[str | int]) -> list[_Level] | None:
    """Each model level along `loc` (its path without the union tags pydantic adds, the models that can
    stand there), from the root down; None when `loc` does not end on a model (a mapping by name)."""
    levels: list[_Level] = [((), [root])]
    current: list[Any] = [root]
    path: tuple[str | int, ...] = ()
    for part in loc:
        tagged = [m for m in current if _is_model(m) and str(part) in _tags(m)] if len(current) > 1 else []
        if tagged:
            current = tagged
            levels[-1] = (path, tagged)
            continue
        following: list[Any] = []
        for tp in current:
            origin, args = typing.get_origin(tp), typing.get_args(tp)
            if _is_model(tp) and isinstance(part, str) and part in _fields(tp):
                following += _members(_fields(tp)[part])
            elif origin is list and isinstance(part, int) and args:
                following += _members(args[0])
            elif origin is dict and isinstance(part, str) and len(args) == 2:
                following += _members(args[1])
        if not following:
            return None
        current, path = following, (*path, part)
        models = [m for m in current if _is_model(m)]
        if models:
            levels.append((path, models))
    return levels if levels[-1][0] == path else None


def _named(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if part == _LIST:
            out += _LIST
        else:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the top level"


def placements(root: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """Where the unknown key at the end of `loc` is a field: one level down (`prompt` beside `stable`
    belongs under it), one level up, or under a sibling (`interval` in a step belongs under
    `spec.analysis`). Paths as a user reads them: `spec.stable`, `spec.steps[]`, `routers.<name>`."""
    if not loc:
        return []
    key, levels = str(loc[-1]), _levels(root, loc[:-1])
    if levels is None:
        return []
    here, models = levels[-1]
    found: list[str] = []

    def below(path: tuple[str | int, ...], parents: list[type[BaseModel]], skip: str | int | None) -> None:
        for parent in parents:
            for name, annotation in _fields(parent).items():
                if name == skip:
                    continue
                for step, model in _inside(annotation):
                    if key in _fields(model):
                        found.append(_named((*path, name, step) if step else (*path, name)))

    below(here, models, None)
    if len(levels) > 1:
        up, parents = levels[-2]
        if any(key in _fields(m) for m in parents):
            found.append(_named(up))
        below(up, parents, here[len(up)] if len(here) > len(up) else None)
    return list(dict.fromkeys(found))


def known(root: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The field names of the models that can stand at `loc`, for a 'did you mean'."""
    levels = _levels(root, loc)
    return list(dict.fromkeys(name for m in levels[-1][1] for name in _fields(m))) if levels else []


def is_of(root: type[BaseModel], loc: Sequence[str | int], kind: Any) -> bool:
    """Whether the field at `loc` is declared with the type `kind` (an Annotated alias such as
    `spec.Percent`), optional or not."""
    levels = _levels(root, loc[:-1]) if loc else None
    if not levels:
        return False
    for model in levels[-1][1]:
        annotation = _fields(model).get(str(loc[-1]))
        if annotation is not None and (annotation == kind or kind in typing.get_args(annotation)):
            return True
    return False

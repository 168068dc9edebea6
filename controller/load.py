"""Read a rollouts repository into validated specs, with errors that name file, line, column and field.

Called by the CLI (`validate`, `plan`) and the reconciler. It reads through a `Tree` (the working
tree or a git ref, see `controller.repo`), never touches a router, and never raises for one broken
rollout: problems are collected per file so that the others still load.

A valid file is read once, through libyaml into plain data (`load_model`); only a file that fails, or a
problem found after validation, pays for ruamel's round-trip parse, whose positions locate the error.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import hashlib
import posixpath
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.parser import RoundTripParser
from ruamel.yaml.reader import ReaderError

from controller import carries, errors, hints, spec, templates

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a prompt file is text a human reviews
MAX_YAML_BYTES = 512 << 10  # a spec, controller.yaml or proxy config: its round-trip parse stays under ~0.6 s
MAX_READ_BYTES = (
    32 << 20
)  # above every file limit (a golden set's is 16 MiB): what a working tree's read returns at most
MAX_DEPTH = 64  # levels of nested mappings and sequences, aliases expanded; a spec needs about ten
MAX_NODES = 10_000  # after alias expansion (a "billion laughs" stops here); keeps the round-trip parse under ~1 s
MAX_TEXT = MAX_FILE_BYTES  # characters of keys and values after alias expansion; no alias-free file reaches it
ROLLOUTS_DIR = "rollouts"
CONFIG_FILE = f"{ROLLOUTS_DIR}/controller.yaml"
ROLLOUT_FILE = "rollout.yaml"
_ROLES = ("stable", "canary", "previous")

M = TypeVar("M", bound=BaseModel)


class PathEscapes(Exception):
    """A path (or a symlink on it) leads outside the repository."""


class NotAFile(Exception):
    """A path names something that is neither a regular file nor a directory (a FIFO, a socket, a
    device): reading it could block forever or never end, so it is never read."""


class Tree(Protocol):
    """A read-only view of a repository: the working tree or one git commit."""

    def read(self, path: str) -> bytes:
        """The bytes of a file; FileNotFoundError if absent, IsADirectoryError for a directory, NotAFile
        for a FIFO, socket or device, PathEscapes if it leads outside, OSError if it cannot be read."""
        ...

    def listdir(self, path: str) -> list[str]:
        """The names in a directory, sorted; [] if it is absent."""
        ...


class PromptRegistry(Protocol):
    """Where `prompts:/NAME/VERSION` prompts are read (controller/registry/mlflow.py); injected, so
    loading stays free of I/O clients."""

    def template(self, config: spec.MlflowConfig, name: str, version: int) -> str:
        """The template of one prompt version, exactly as stored; errors.RegistryError (saying why, with
        no secret) when the server cannot be reached or has no such prompt version."""
        ...


@dataclass(frozen=True)
class Document:
    """A parsed YAML file: the round-trip tree (comments kept) and where it came from."""

    path: str
    data: Any


@dataclass(frozen=True)
class LoadedRollout:
    path: str  # the rollout file, relative to the repository root
    rollout: spec.Rollout
    revisions: dict[str, str]  # "stable" and, while one exists, "canary" -> content hash
    prompts: dict[str, str]  # "stable"/"canary" -> prompt path from the repository root, or `prompts:/NAME/VERSION`
    prompt_digests: dict[str, str] = field(default_factory=dict)  # role -> sha256 of the prompt bytes
    prompt_texts: dict[str, str] = field(default_factory=dict)  # role -> the prompt file's text
    # role -> why its `prompts:/` prompt could not be read (MLflow unreachable; loaded with `degraded=True`):
    # its revision is then `status.revision` for the canary, else UNREAD, and only what lowers exposure is done
    unread: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.rollout.metadata.name


@dataclass
class RepoSpec:
    """Everything desired that could be read, and every problem found on the way."""

    config: spec.ControllerConfig | None
    rollouts: list[LoadedRollout] = field(default_factory=list)
    problems: list[errors.Problem] = field(default_factory=list)

    def rollout(self, name: str) -> LoadedRollout | None:
        return next((r for r in self.rollouts if r.name == name), None)


# -- YAML ----------------------------------------------------------------------------------------


class _Refused(Exception):
    """A YAML stream breaks one of the bounds; raised while it is parsed, before anything is built."""

    def __init__(self, message: str, mark: Any, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code
        self.line = mark.line + 1 if mark is not None else 0
        self.column = mark.column + 1 if mark is not None else 0


def _tag_text(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


_CORE = "tag:yaml.org,2002:"
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Bounds:
    """Checks a YAML event stream as the parser yields it, so that nothing is built from a document
    that breaks a bound: nesting depth, nodes and text after alias expansion (each alias costs what its
    anchor's node costs, so an alias bomb is counted without being expanded), anchors that are
    redefined or used inside their own node (a recursive structure), and explicit tags. One instance
    per document; both the fast path (`_build`) and the round-trip parse (`_BoundedParser`) feed it the
    events their parser produces, so both refuse the same documents."""

    __slots__ = ("anchors", "nodes", "open", "text")

    def __init__(self) -> None:
        self.nodes = 0
        self.text = 0
        # per open collection: [anchor, nodes and text at its start, the height of its deepest child]
        self.open: list[list[Any]] = []
        self.anchors: dict[str, tuple[int, int, int, Any]] = {}  # name -> nodes, text, height, where

    def see(self, event: Any) -> None:
        kind = type(event)
        if kind is ScalarEvent:  # the common event first, with no call in the common case
            if event.tag is not None or event.anchor is not None:
                self._node(event)
            value = event.value
            if event.style == '"' and (lone := _SURROGATE.search(value)):  # only an escape makes one
                raise _Refused(
                    f"a lone surrogate (\\u{ord(lone.group()):04X}) is not a character", event.start_mark, "E001"
                )
            self.nodes += 1
            self.text += len(value)
            if self.nodes > MAX_NODES or self.text > MAX_TEXT:
                self._over(event)
            if event.anchor is not None:
                self.anchors[event.anchor] = (1, len(value), 0, event.start_mark)
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if event.tag is not None or event.anchor is not None:
                self._node(event)
            self._add(1, 0, 1, event)
            self.open.append([event.anchor, self.nodes - 1, self.text, 0, event.start_mark])
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            anchor, nodes, text, height, where = self.open.pop()
            if self.open and height + 1 > self.open[-1][3]:
                self.open[-1][3] = height + 1
            if anchor is not None:
                self.anchors[anchor] = (self.nodes - nodes, self.text - text, height + 1, where)
        elif kind is AliasEvent:
            name = event.anchor
            if any(frame[0] == name for frame in self.open):
                raise _Refused(
                    f"alias '*{name}' is inside the node its anchor names: a recursive structure is not allowed",
                    event.start_mark,
                    "E001",
                )
            found = self.anchors.get(name)
            if found is not None:  # an undefined alias is the parser's own error
                self._add(found[0], found[1], found[2], event)
        elif kind is DocumentStartEvent:
            self.anchors = {}

    def _node(self, event: Any) -> None:
        tag = event.tag
        if tag is not None and tag != "!":
            raise _Refused(
                f"YAML tag {_tag_text(tag)!r} is not allowed: specs are plain data", event.start_mark, "E001"
            )
        name = event.anchor
        if name is not None:
            first = self.anchors.get(name)
            where = first[3] if first else next((f[4] for f in self.open if f[0] == name), None)
            if where is not None:
                raise _Refused(
                    f"anchor '&{name}' is defined twice (first on line {where.line + 1}); give each its own name",
                    event.start_mark,
                    "E001",
                )

    def _add(self, nodes: int, text: int, height: int, event: Any) -> None:
        """Count a collection (or an alias's expansion) of `height` levels at the current depth."""
        self.nodes += nodes
        self.text += text
        if len(self.open) + height > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark, "E006")
        if self.open and height > self.open[-1][3]:
            self.open[-1][3] = height
        if self.nodes > MAX_NODES or self.text > MAX_TEXT:
            self._over(event)

    def _over(self, event: Any) -> None:
        if self.nodes > MAX_NODES:
            raise _Refused(f"document expands to more than {MAX_NODES} nodes (alias bomb?)", event.start_mark, "E006")
        raise _Refused(
            f"document expands to more than {MAX_TEXT // 1024} KiB of text (aliases that repeat a large value?)",
            event.start_mark,
            "E006",
        )


class _BoundedParser(RoundTripParser):
    """The round-trip parser, with every event it hands the composer checked by `_Bounds` first."""

    def __init__(self, loader: Any) -> None:
        super().__init__(loader)
        self.bounds = _Bounds()

    def get_event(self) -> Any:
        event = super().get_event()
        self.bounds.see(event)
        return event


class _Composer(Composer):
    """The composer, quiet about a reused anchor: `_Bounds` refuses it as an error."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.warn_double_anchors = False


class _Constructor(RoundTripConstructor):
    """The round-trip constructor; a scalar it cannot read (an integer of 5000 digits, February 30th)
    is a located YAML error, not a bare ValueError."""

    def construct_non_recursive_object(self, node: Any, tag: str | None = None) -> Any:
        try:
            return super().construct_non_recursive_object(node, tag)
        except YAMLError:
            raise
        except (ValueError, OverflowError, TypeError) as exc:
            kind = _tag_text(str(node.tag)) if node.tag is not None else "value"
            value = node.value if isinstance(node, ScalarNode) else ""
            if kind == "!!int" and isinstance(value, str) and len(value) > 100:
                why = f"an integer of {len(value)} digits is too long"
            else:
                why = f"cannot read {kind} {str(value)[:40]!r}: {exc}"
            raise ConstructorError(None, None, why, node.start_mark) from exc


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.Parser = _BoundedParser
    yaml.Composer = _Composer
    yaml.Constructor = _Constructor
    return yaml


def _text(path: str, data: bytes) -> str:
    """The file as text, or SpecError if it is too large, not UTF-8, or binary."""
    if len(data) > MAX_YAML_BYTES:
        raise _fail(path, f"file is larger than {MAX_YAML_BYTES // 1024} KiB", code="E006")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _fail(path, "file is not valid UTF-8", line=line, code="E006") from exc
    if "\x00" in text:
        raise _fail(path, "file contains NUL bytes; is it binary?", code="E006")
    return text


def parse_yaml(path: str, data: bytes) -> Document:
    """Parse one YAML file safely: size, encoding, duplicate keys, the bounds of `_Bounds` and syntax."""
    text = _text(path, data)
    try:
        tree = _yaml().load(text)
    except _Refused as exc:
        raise _fail(path, exc.message, line=exc.line, column=exc.column, code=exc.code, text=text) from None
    except MarkedYAMLError as exc:
        raise _structure_error(path, text, exc) from exc
    except ReaderError as exc:  # a character YAML does not allow (a control character): locate it
        before = text[: exc.position]
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        what = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        message = f"character {what} is not allowed in YAML (a control character?)"
        raise _fail(path, message, line=line, column=column, code="E001", text=text) from exc
    except YAMLError as exc:
        raise _fail(path, "invalid YAML: " + " ".join(str(exc).split())[:300], code="E001") from exc
    return Document(path, tree)


def _structure_error(path: str, text: str, exc: MarkedYAMLError) -> errors.SpecError:
    """A parser or scanner error in plain words where the lines around it say what went wrong
    (`hints.structure`), else in the parser's words; located, with the offending line."""
    mark = exc.problem_mark or exc.context_mark
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    if "duplicate key" in problem or "found duplicate key" in str(exc):
        problem = _duplicate_key_message(exc)
    line, column = (mark.line, mark.column) if mark else (-1, -1)
    if mark and not isinstance(exc, ConstructorError):
        context = exc.context_mark if exc.context else None
        said = hints.structure(
            hints.lines(text),
            problem=problem,
            line=mark.line,
            column=mark.column,
            context=exc.context or "",
            context_line=context.line if context else -1,
            context_column=context.column if context else -1,
        )
        line, column = said.line, said.column
        if said.advice:
            problem = said.advice
        elif "block" in problem:
            problem += " (check the indentation)"
    return _fail(path, problem, line=line + 1, column=column + 1, code="E001", text=text)


def _duplicate_key_message(exc: MarkedYAMLError) -> str:
    problem = exc.problem or ""
    key = problem.split('"')[1] if problem.count('"') >= 2 else ""
    return f"duplicate key {key!r}" if key else "duplicate key"


def _fail(path: str, message: str, *, line: int = 0, column: int = 0, code: str, text: str = "") -> errors.SpecError:
    """A problem of one file; with the file's `text`, it carries the offending line for text output."""
    source = hints.excerpt(hints.lines(text), line) if text and line else ""
    return errors.SpecError([errors.Problem(path, line, column, "", message, code, source)])


# -- the fast path: plain data, no positions --------------------------------------------------------

# Text that libyaml and the round-trip loader could read differently. Values: tags (round-trip keeps
# `!!str 1` as a TaggedScalar), anchors and aliases (an anchored `true` is an int there), merge keys
# (another key order) and directives (`%YAML 1.1`). Syntax that libyaml accepts and the round-trip
# loader refuses: tabs, the line breaks of YAML 1.1 (NEL, LS, PS), and in block scalars (`|`, `>`) a
# comment glued to the header or a blank line with spaces, and a byte-order mark after the first character
# (libyaml drops it, the round-trip loader keeps it in a key). Such a file takes the round-trip path; it is
# rare in a spec, and a false alarm (`"a &b"`) only costs time. Comments are not searched for the markers
# (`# stable -> canary, x > y` is prose) on a line without quote characters: there a `#` after a space is a
# comment, or content of a quoted scalar that goes on past the line's end; either way nothing in it is read
# as syntax. A line with a quote character is searched whole.
_MARKERS = re.compile(r"(?:^|[\s\[{,:])(?:!|[&*][^\s\[\]{},])|<<|(?:^|\n)%|(?:^|\s)[|>]")
_ANYWHERE = re.compile(r"[\t\x85\u2028\u2029]|(?<=[\s\S])\ufeff")  # line breaks and marks, in comments too
_COMMENT = re.compile(r"(?m)^(?=[^'\"\n]*$)([^#\n]*?)(?:^|(?<=[ ]))#.*$")


def _round_trip_only(text: str) -> bool:
    """Whether `text` holds something libyaml and the round-trip loader could read differently."""
    return bool(_ANYWHERE.search(text) or _MARKERS.search(_COMMENT.sub(r"\1", text)))


_STR, _MAP, _SEQ = (f"{_CORE}{t}" for t in ("str", "map", "seq"))
_SCALARS = frozenset(f"{_CORE}{t}" for t in ("null", "bool", "int", "float", "timestamp"))


class _NotPlain(Exception):
    """The fast path declines a document; the round-trip parse answers for it."""


def _plain_yaml(text: str) -> Any:
    """The data of a YAML document as dicts, lists and scalars, without comments or positions: parsed by
    libyaml where ruamel.yaml.clib is installed (ten times faster than ruamel's pure-Python parser),
    resolved by YAML 1.2's rules as in the round-trip loader. Raises for what it does not read the same,
    and for what breaks a bound of `_Bounds`."""
    if _C_LOADER is not None:
        loader = _C_LOADER(text)
        try:
            return _build(loader.get_event, loader.resolve, loader)
        finally:
            loader.dispose()
    yaml = YAML(typ="safe", pure=True)
    events = yaml.parse(text)
    return _build(lambda: next(events, None), yaml.resolver.resolve, yaml.constructor)


_NO_KEY = object()


def _build(next_event: Callable[[], Any], resolve: Callable[..., str], constructor: Any) -> Any:
    """Build a document from its events, without recursion (however deep, it is refused by `_Bounds`
    before anything is built): mappings, sequences and strings here, other scalars by ruamel's safe
    constructor. A duplicate key, a key that is not a scalar, a tag other than YAML 1.2's implicit ones
    and a second document are declined."""
    bounds = _Bounds()
    stack: list[list[Any]] = []  # per open collection: [container, pending key, anchor]
    anchors: dict[str, Any] = {}
    root: Any = None
    documents = 0
    while (event := next_event()) is not None:
        bounds.see(event)
        kind = type(event)
        if kind is ScalarEvent:
            tag = event.tag
            if tag is None or tag == "!":
                # ruamel's Tag: its suffix is the tag's text (str() decodes %-escapes char by char, slowly)
                tag = getattr(resolve(ScalarNode, event.value, event.implicit), "suffix", None)
            if tag == _STR:
                value = event.value
            elif tag in _SCALARS:
                value = constructor.construct_object(ScalarNode(tag, event.value))
            else:
                raise _NotPlain(f"tag {tag}")
            if event.anchor is not None:
                anchors[event.anchor] = value
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            stack.append([{} if kind is MappingStartEvent else [], _NO_KEY, event.anchor])
            continue
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            value, _, anchor = stack.pop()
            if anchor is not None:
                anchors[anchor] = value
        elif kind is AliasEvent:
            if event.anchor not in anchors:
                raise _NotPlain(f"undefined alias {event.anchor}")
            value = anchors[event.anchor]
        elif kind is DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _NotPlain("more than one document")
            continue
        else:
            continue
        if not stack:
            root = value
            continue
        top = stack[-1]
        container = top[0]
        if isinstance(container, list):
            container.append(value)
        elif top[1] is _NO_KEY:
            if isinstance(value, dict | list) or value in container:
                raise _NotPlain(f"duplicate or unhashable key {value!r}")
            top[1] = value
        else:
            container[top[1]] = value
            top[1] = _NO_KEY
    return root


def _c_loader() -> Any:
    """libyaml's parser through ruamel.yaml.clib, or None where the C extension is not installed."""
    try:
        from ruamel.yaml.cyaml import CSafeLoader
    except ImportError:
        return None

    class PlainLoader(CSafeLoader):
        # Its resolver is YAML 1.2's, but it reports no version, and then the safe constructor would
        # read floats by YAML 1.1's rules and warn about `1e3`.
        @property
        def processing_version(self) -> tuple[int, int]:
            return (1, 2)

    return PlainLoader


_C_LOADER = _c_loader()


def load_model(model: type[M], path: str, data: bytes, *, code: str = "E002") -> M:
    """Parse and validate one file. A valid file goes through the fast path only; a file that it declines
    or that does not validate is parsed again by the round-trip loader, whose answer counts and whose
    positions name the line, column and field of every problem, so errors read as they always did."""
    text = _text(path, data)
    if not _round_trip_only(text):
        try:
            return model.model_validate(_plain_yaml(text))
        except _Refused as exc:  # a bound, at the event libyaml reports it: the round-trip parse stops there too
            raise _fail(path, exc.message, line=exc.line, column=exc.column, code=exc.code, text=text) from None
        except Exception:  # whatever else the fast path refuses, the round-trip parse below answers and locates
            pass
    return validate(model, parse_yaml(path, data), code=code)


# -- locating pydantic errors ----------------------------------------------------------------------


def field_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{_shown(part)}" if out else _shown(part))
    return out


def _shown(part: object) -> str:
    """A key as a message may print it: escapes for what a terminal would act on (`\\x1b]0;...`)."""
    return errors.printable(str(part)[:200])


def locate(doc: Any, loc: Sequence[str | int], *, at_key: bool = False) -> tuple[int, int, list[str | int]]:
    """Follow `loc` through the YAML tree: (line, column, the part of loc that exists in the data).

    Parts that are not in the data (a union's tag, a model's name) are skipped. The position is that
    of the deepest node found: its value, or its key when `at_key`. A field that is missing from a
    mapping is named in the path and located at the mapping's own key.
    """
    node, line, column, found = doc, 1, 1, []
    key_line, key_col = 1, 1
    if isinstance(doc, CommentedMap | CommentedSeq) and doc.lc.line is not None:
        line, column = doc.lc.line + 1, doc.lc.col + 1
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
            kl, kc, vl, vc = node.lc.data[part]
            key_line, key_col = kl + 1, kc + 1
            line, column = (key_line, key_col) if (at_key and last) else (vl + 1, vc + 1)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            il, ic = node.lc.data[part]
            line, column = key_line, key_col = il + 1, ic + 1
            node = node[part]
        elif (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):  # plain containers (from an alias) carry no positions
            node = cast(Any, node)[part]
        else:
            if last and isinstance(node, dict):
                found.append(part)  # a missing field: name it, point at its parent's key
                if at_key:
                    line, column = key_line, key_col
            continue
        found.append(part)
    return line, column, found


def _message(error: ErrorDetails, model: type[BaseModel], loc: Sequence[str | int]) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return _unknown_field(model, loc)
    value = error.get("input")
    percent = _PERCENT.match(value) if kind == "int_type" and isinstance(value, str) else None
    if percent and hints.is_of(model, loc, spec.Percent):
        return f"{loc[-1]} is a percentage already: write `{loc[-1]}: {percent.group(1)}`"
    ctx = error.get("ctx", {})
    if kind == "union_tag_invalid":
        return f"unknown {_tag(ctx)} {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "required field is missing"
    bounds = {
        "greater_than_equal": ("ge", "at least"),
        "less_than_equal": ("le", "at most"),
        "greater_than": ("gt", "greater than"),
        "less_than": ("lt", "less than"),
    }
    if kind in bounds:
        key, words = bounds[kind]
        return f"must be {words} {ctx.get(key)}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    if kind == "string_pattern_mismatch":
        return "has an invalid format" + _pattern_hint(str(error.get("ctx", {}).get("pattern", "")))
    if kind == "literal_error":
        return "must be " + str(error.get("ctx", {}).get("expected", ""))
    if kind == "enum":
        return "must be " + str(error.get("ctx", {}).get("expected", ""))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    msg = msg[:1].lower() + msg[1:]
    return msg.replace("input should be a valid dictionary", "must be a mapping").replace("input should be", "must be")


def _tag(ctx: dict[str, Any]) -> str:
    return str(ctx.get("discriminator", "type")).strip("'")


def _pattern_hint(pattern: str) -> str:
    hints = {
        spec.DNS_LABEL: ": use lower-case letters, digits and '-', at most 63 characters",
        spec.LABEL_NAME: ": use a Prometheus label name (letters, digits, '_')",
        spec.TEMPLATE_NAME: ": use lower-case letters, digits and '_'",
        spec.ROUTE_NAME: ": use letters, digits and . _ / -",
        spec.ENV_NAME: ": use an environment variable name such as GITHUB_TOKEN",
        spec.MODEL_ID: ": use printable ASCII without spaces",
        spec.COHORT_VALUE: ": use printable ASCII, at most 128 characters, with no space at either end",
        spec.HEADER_NAME: ": use an HTTP header name (letters, digits and - _ . ! # $ % & ' * + ^ ` | ~, no ':')",
    }
    return hints.get(pattern, f" (expected to match {pattern})")


_PERCENT = re.compile(r"^\s*([0-9]+)\s*%\s*$")


def _unknown_field(model: type[BaseModel], loc: Sequence[str | int]) -> str:
    """Where a key that is not a field here belongs (one level up, down or under a sibling), else the
    closest field name here."""
    places = hints.placements(model, loc)
    if places:
        named = [f"`{p}`" for p in places]
        listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " or " + named[-1]
        return f"unknown field here; it belongs under {listed}"
    close = difflib.get_close_matches(str(loc[-1]), hints.known(model, loc[:-1]), n=1)
    return "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")


def validate(model: type[M], doc: Document, *, code: str = "E002") -> M:
    """Validate a parsed document against a model; every error is located in the file."""
    try:
        return model.model_validate(_plain(doc.data))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc: tuple[str | int, ...] = tuple(error["loc"])
            cause = error.get("ctx", {}).get("error")
            if isinstance(cause, spec.LocatedValueError):
                loc += cause.loc
            at_key = error["type"] in ("extra_forbidden", "missing", "union_tag_not_found")
            if "[key]" in loc:  # a mapping key itself is invalid: point at the key
                loc, at_key = loc[: loc.index("[key]")], True
            if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc += (_tag(error.get("ctx", {})),)
            line, column, found = locate(doc.data, loc, at_key=at_key)
            message = _message(error, model, _without_tags(doc.data, loc))
            problems.append(errors.Problem(doc.path, line, column, field_path(found), message, code))
        raise errors.SpecError(_dedupe(problems)) from None


def _is_tag(part: str | int) -> bool:
    return isinstance(part, str) and part[:1].isupper()


def _without_tags(data: Any, loc: Sequence[str | int]) -> list[str | int]:
    """`loc` without the names pydantic adds for a union's members (`RatioTemplate`): a part is one when
    the document has no such key there. A key the user wrote (`Stable:`, `Kind:`) stays, capitalised or not."""
    out: list[str | int] = []
    node = data
    for part in loc:
        written = isinstance(node, Mapping) and part in node
        written |= isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not written and _is_tag(part):
            continue
        node = node[part] if written else None
        out.append(part)
    return out


def _dedupe(problems: list[errors.Problem]) -> list[errors.Problem]:
    seen: set[tuple[str, int, str]] = set()
    out = []
    for p in problems:
        if (p.file, p.line, p.field) not in seen:
            seen.add((p.file, p.line, p.field))
            out.append(p)
    return out


def _plain(node: Any) -> Any:
    """Round-trip containers to plain dicts and lists, so pydantic sees ordinary JSON-like data."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


# -- the repository ------------------------------------------------------------------------------


def load_config(tree: Tree) -> spec.ControllerConfig:
    """The controller config. Raises SpecError, and only SpecError, whatever the file holds."""
    with _isolated(CONFIG_FILE):
        try:
            data = tree.read(CONFIG_FILE)
        except FileNotFoundError:
            raise _fail(
                CONFIG_FILE, "file is missing: every rollouts repository names its routers here", code="E006"
            ) from None
        except (PathEscapes, NotAFile, OSError) as exc:
            raise _unreadable(CONFIG_FILE, exc) from None
        return load_model(spec.ControllerConfig, CONFIG_FILE, data)


def _unreadable(path: str, exc: Exception) -> errors.SpecError:
    """Why a file that exists cannot be read, as its SpecError."""
    if isinstance(exc, PathEscapes):
        return _fail(path, "path leads outside the repository", code="E004")
    return _fail(path, _why_unreadable("file", exc), code="E006")


def _why_unreadable(what: str, exc: Exception) -> str:
    if isinstance(exc, NotAFile):
        return f"{what} is not a regular file (a FIFO, socket or device): it is never read"
    if isinstance(exc, IsADirectoryError):
        return f"{what} is a directory, not a file"
    if isinstance(exc, OSError):
        return f"{what} cannot be read: {exc.strerror or exc}"
    return f"{what} cannot be read: {exc}"


@contextlib.contextmanager
def _isolated(path: str) -> Iterator[None]:
    """Whatever goes wrong while one file is loaded becomes that file's SpecError: a bug, or an input
    nobody foresaw, costs its own rollout (or, for controller.yaml, stops the tick cleanly), never a
    traceback, and never the other rollouts."""
    try:
        yield
    except errors.SpecError:
        raise
    except Exception as exc:  # the isolation of one file is the point
        detail = " ".join(str(exc).split())[:200]
        message = f"could not be loaded ({type(exc).__name__}{': ' + detail if detail else ''})"
        raise _fail(path, message, code="E006") from exc


def rollout_files(tree: Tree) -> Iterator[str]:
    """`rollouts/<name>/rollout.yaml`, sorted by name."""
    for name in tree.listdir(ROLLOUTS_DIR):
        if ROLLOUT_FILE in tree.listdir(f"{ROLLOUTS_DIR}/{name}"):
            yield f"{ROLLOUTS_DIR}/{name}/{ROLLOUT_FILE}"


def load_rollout(
    tree: Tree,
    path: str,
    config: spec.ControllerConfig,
    *,
    prompts: PromptRegistry | None = None,
    degraded: bool = False,
) -> LoadedRollout:
    """Load and check one rollout file against the config, reading `prompts:/` prompts from `prompts`.
    Raises SpecError with every problem found, and only SpecError, whatever the file holds. With
    `degraded` (the controller), a prompt the registry could not be reached for
    (errors.RegistryUnavailable) is no problem: the rollout loads with it in `unread`, so that nothing
    stands between it and its rollback."""
    with _isolated(path):
        return _load_rollout(tree, path, config, prompts, degraded)


UNREAD = "unread"  # the revision of a variant whose `prompts:/` prompt could not be read, and no status names it


def _load_rollout(
    tree: Tree, path: str, config: spec.ControllerConfig, registry: PromptRegistry | None, degraded: bool = False
) -> LoadedRollout:
    try:
        data = tree.read(path)
    except FileNotFoundError:
        raise _fail(path, "file is missing", code="E006") from None
    except (PathEscapes, NotAFile, OSError) as exc:
        raise _unreadable(path, exc) from None
    rollout = _parsed_rollout(path, data)
    problems: list[errors.Problem] = []
    docs: list[Document] = []  # the round-trip parse, made only if a problem needs a line number

    def problem(loc: tuple[str | int, ...], message: str, code: str) -> None:
        if not docs:
            docs.append(parse_yaml(path, data))
        line, column, found = locate(docs[0].data, loc)
        problems.append(errors.Problem(path, line, column, field_path(found), message, code))

    directory = posixpath.basename(posixpath.dirname(path))
    if (
        directory != rollout.metadata.name
        and posixpath.basename(posixpath.dirname(posixpath.dirname(path))) == ROLLOUTS_DIR
    ):
        problem(("metadata", "name"), f"must match its directory name {directory!r}", "E005")
    s = rollout.spec
    if s.router not in config.routers:
        problem(
            ("spec", "router"),
            f"unknown router {s.router!r}; controller.yaml names {sorted(config.routers)}",
            "E003",
        )
    known = config.gate_names()
    for i, gate in enumerate(s.analysis.gates):
        if gate.use not in known:
            close = difflib.get_close_matches(gate.use, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"
            problem(("spec", "analysis", "gates", i, "use"), f"unknown gate template {gate.use!r}{hint}", "E003")
        elif templates.resolve(gate.use, config).vllm_only and s.analysis.metrics is not spec.ServerMetrics.VLLM:
            problem(
                ("spec", "analysis", "gates", i, "use"),
                f"gate template {gate.use!r} reads only vLLM's own metrics: set spec.analysis.metrics: vllm "
                "(the model is served by vLLM, scraped with route and variant labels), or use another gate",
                "E003",
            )
        elif templates.resolve(gate.use, config).kind == "ratio":
            for name, message in _rate_bounds(gate):
                problem(("spec", "analysis", "gates", i, name), message, "E002")

    if s.aliases and config.mlflow is None:
        problem(("spec", "aliases"), "names MLflow aliases, and controller.yaml has no `mlflow:` section", "E003")
    revisions: dict[str, str] = {}
    prompts: dict[str, str] = {}
    digests: dict[str, str] = {}
    texts: dict[str, str] = {}
    unread: dict[str, str] = {}
    for role in _ROLES:
        variant: spec.Variant | None = getattr(s, role)
        if variant is None:
            continue
        body: bytes | None = None
        if variant.prompt is not None:
            down = ""
            if spec.registry_prompt(variant.prompt) is None:
                resolved, body, why = _read_prompt(tree, path, variant.prompt)
            else:
                resolved, body, why, down = _registry_prompt(registry, config, variant.prompt)
            if down and degraded:
                prompts[role], unread[role] = resolved, down
                # the canary the gates judge, and the stable it was judged against, as the status recorded them
                status = rollout.status
                recorded = {"canary": status.revision, "stable": status.stable_revision} if status else {}
                revisions[role] = recorded.get(role) or UNREAD
                continue
            if why:
                problem(("spec", role, "prompt"), why, "E004")
                continue
            prompts[role] = resolved
            digests[role] = hashlib.sha256(body or b"").hexdigest()
            texts[role] = (body or b"").decode("utf-8")
        revisions[role] = spec.revision(variant, body)
    router = config.routers.get(s.router)
    read = all(getattr(s, role) is None or getattr(s, role).prompt is None or role in digests for role in _ROLES)
    if router is not None and read:  # a prompt that could not be read is its own problem, not a difference
        for refusal in carries.refusals(s, s.router, router, prompts=digests):
            problem(refusal.loc, refusal.message, "E007")
    if problems:
        raise errors.SpecError(problems)
    return LoadedRollout(path, rollout, revisions, prompts, digests, texts, unread)


def _rate_bounds(gate: spec.Gate) -> list[tuple[str, str]]:
    """(field, why) for each limit of a gate on a rate (a ratio template: 0 to 100%) that lies outside what
    a rate can be, so the gate could never fail (or never pass)."""
    out = []
    if gate.max is not None and gate.max > 1:
        out.append(("max", f"must be at most 100%: {gate.use} is a rate, so this limit could never fail"))
    if gate.min is not None and gate.min > 1:
        out.append(("min", f"must be at most 100%: {gate.use} is a rate, so this limit could never pass"))
    if gate.max_drop is not None and gate.max_drop >= 1:
        out.append(("maxDrop", f"must be below 100%: {gate.use} is a rate, so a drop this large could never fail"))
    return out


_PARSED: collections.OrderedDict[tuple[str, str], spec.Rollout] = collections.OrderedDict()
_PARSED_MAX = 4096  # entries; only files up to 64 KiB are kept
_PARSED_LOCK = threading.Lock()


def _parsed_rollout(path: str, data: bytes) -> spec.Rollout:
    """Parse and validate a rollout file; the same bytes at the same path are parsed once (a YAML parse
    dominates a tick at scale). Invalid files raise and are not cached; the models are frozen."""
    key = (path, hashlib.sha256(data).hexdigest())
    with _PARSED_LOCK:
        hit = _PARSED.get(key)
        if hit is not None:
            _PARSED.move_to_end(key)
            return hit
    rollout = load_model(spec.Rollout, path, data)
    if len(data) <= 64 * 1024:
        with _PARSED_LOCK:
            _PARSED[key] = rollout
            while len(_PARSED) > _PARSED_MAX:
                _PARSED.popitem(last=False)
    return rollout


def _read_prompt(tree: Tree, rollout_path: str, prompt: str) -> tuple[str, bytes | None, str]:
    """(path from the repository root, bytes, why it is refused or '')."""
    if prompt.startswith("/") or prompt.startswith("\\") or (len(prompt) > 1 and prompt[1] == ":"):
        return prompt, None, "must be a path relative to the rollout's directory, not an absolute path"
    if ".." in prompt.replace("\\", "/").split("/"):
        return prompt, None, "must not contain '..': prompts live inside the repository"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rollout_path), prompt))
    try:
        body = tree.read(resolved)
    except FileNotFoundError:
        return resolved, None, f"prompt file {resolved!r} does not exist"
    except PathEscapes:
        return resolved, None, f"prompt file {resolved!r} is a symlink that leads outside the repository"
    except IsADirectoryError:
        return resolved, None, f"prompt {resolved!r} is a directory, not a file"
    except (NotAFile, OSError) as exc:
        return resolved, None, _why_unreadable(f"prompt {resolved!r}", exc)
    if len(body) > MAX_FILE_BYTES:
        return resolved, None, f"prompt file {resolved!r} is larger than {MAX_FILE_BYTES // 1024} KiB"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return resolved, None, f"prompt file {resolved!r} is not valid UTF-8 text"
    return resolved, body, ""


def _registry_prompt(
    registry: PromptRegistry | None, config: spec.ControllerConfig, prompt: str
) -> tuple[str, bytes | None, str, str]:
    """(the `prompts:/NAME/VERSION` URI, the template's bytes, why it is refused or '', and the adapter's
    words when that is because the registry could not be reached, else '')."""
    pinned = spec.registry_prompt(prompt)
    assert pinned is not None
    name, version = pinned
    if config.mlflow is None:
        return (
            prompt,
            None,
            f"prompt {prompt!r} is in MLflow's Prompt Registry, and controller.yaml has no `mlflow:` section",
            "",
        )
    if registry is None:
        return prompt, None, f"prompt {prompt!r} is in MLflow's Prompt Registry, which this command does not read", ""
    try:
        text = registry.template(config.mlflow, name, version)
    except errors.RegistryError as exc:
        why = f"prompt {prompt!r} could not be read from {config.mlflow.tracking_uri}: {exc}"
        return prompt, None, why, why if isinstance(exc, errors.RegistryUnavailable) else ""
    body = text.encode("utf-8")
    if len(body) > MAX_FILE_BYTES:
        return prompt, None, f"prompt {prompt!r} is larger than {MAX_FILE_BYTES // 1024} KiB", ""
    return prompt, body, "", ""


def load_repo(
    tree: Tree,
    *,
    only: Sequence[str] | None = None,
    prompts: PromptRegistry | None = None,
    degraded: bool = False,
) -> RepoSpec:
    """Load the config and every rollout. A broken rollout is reported and skipped; the rest load.

    `only` limits which rollout files are reported on (for `rollout validate FILE`), but every
    rollout is still read so that conflicts between them are found. `prompts` reads `prompts:/`
    prompts; without it, a rollout that has one is a problem. `degraded`: as `load_rollout`'s.
    """
    try:
        config = load_config(tree)
    except errors.SpecError as exc:
        return RepoSpec(config=None, problems=exc.problems)
    repo = RepoSpec(config=config)
    taken: dict[tuple[str, str], str] = {}
    for path in rollout_files(tree):
        try:
            loaded = load_rollout(tree, path, config, prompts=prompts, degraded=degraded)
        except errors.SpecError as exc:
            repo.problems.extend(exc.problems)
            continue
        key = (loaded.rollout.spec.router, loaded.rollout.spec.route)
        if key in taken:
            doc = parse_yaml(path, tree.read(path))
            line, column, found = locate(doc.data, ("spec", "route"))
            repo.problems.append(
                errors.Problem(
                    path,
                    line,
                    column,
                    field_path(found),
                    f"route {key[1]!r} on router {key[0]!r} is already rolled out by {taken[key]}",
                    "E005",
                )
            )
            continue
        taken[key] = path
        repo.rollouts.append(loaded)
    repo.problems.extend(_proxy_config_problems(tree, repo))
    if only is not None:
        wanted = set(only)
        repo.problems = [p for p in repo.problems if p.file in wanted or p.file == CONFIG_FILE]
        repo.rollouts = [r for r in repo.rollouts if r.path in wanted]
    return repo


def _proxy_config_problems(tree: Tree, repo: RepoSpec) -> list[errors.Problem]:
    """For each LiteLLM router whose `proxyConfig` is in the repository: a problem at that field of
    controller.yaml when the proxy's config routes a rollout's model group by a strategy that ignores
    weights, or cannot be read. Reported, never blocking: the rollouts still load and roll back."""
    assert repo.config is not None
    out: list[errors.Problem] = []
    for name, router in repo.config.routers.items():
        if not isinstance(router, spec.LitellmRouterConfig) or router.proxy_config is None:
            continue
        routes = [r.rollout.spec.route for r in repo.rollouts if r.rollout.spec.router == name]
        why = _proxy_config_why(tree, router.proxy_config, routes)
        if why:
            line, column, found = locate(
                parse_yaml(CONFIG_FILE, tree.read(CONFIG_FILE)).data, ("routers", name, "proxyConfig")
            )
            out.append(errors.Problem(CONFIG_FILE, line, column, field_path(found), why, "E008"))
    return out


def _proxy_config_why(tree: Tree, path: str, routes: Sequence[str]) -> str:
    """Why the proxy config at `path` (relative to the repository root) is refused, or ''."""
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":") or ".." in path.replace("\\", "/").split("/"):
        return f"{path!r} must be a path inside the repository, relative to its root"
    try:
        data = tree.read(path)
    except (FileNotFoundError, IsADirectoryError):
        return f"the proxy config {path!r} does not exist"
    except PathEscapes:
        return f"the proxy config {path!r} is a symlink that leads outside the repository"
    except (NotAFile, OSError) as exc:
        return _why_unreadable(f"the proxy config {path!r}", exc)
    try:
        doc = parse_yaml(path, data)
    except errors.SpecError as exc:
        return f"the proxy config {path!r} cannot be read: {exc.problems[0]}"
    found = carries.strategy_problem(_plain(doc.data), routes=routes)
    if found is None:
        return ""
    line = locate(doc.data, found[0])[0]
    return f"the proxy config {path}{f':{line}' if line else ''}: {found[1]}"


def route_rollouts(result: RepoSpec, router: str) -> dict[str, str]:
    """route -> rollout name, for every rollout on `router` (what Envoy names clusters and keys after)."""
    return {r.rollout.spec.route: r.name for r in result.rollouts if r.rollout.spec.router == router}


def rollout_cohorts(result: RepoSpec, router: str) -> dict[str, tuple[str, ...]]:
    """rollout name -> its cohorts' names in spec order, for every rollout on `router` with cohorts: the
    runtime keys Envoy splits each cohort by, which a write sets without asking Envoy which it runs."""
    return {
        r.name: tuple(c.name for c in r.rollout.spec.cohorts)
        for r in result.rollouts
        if r.rollout.spec.router == router and r.rollout.spec.cohorts
    }

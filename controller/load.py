"""Read a rollouts repository into validated specs, with errors that name file, line, column and field.

Called by the CLI (`validate`, `plan`) and the reconciler. It reads through a `Tree` (the working
tree or a git ref, see `controller.repo`), never touches a router, and never raises for one broken
rollout: problems are collected per file so that the others still load.

A valid file is read once, through libyaml into plain data (`load_model`); only a file that fails, or a
problem found after validation, pays for ruamel's round-trip parse, whose positions locate the error.
"""

from __future__ import annotations

import collections
import difflib
import hashlib
import posixpath
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from controller import carries, errors, spec

MAX_FILE_BYTES = 1 << 20  # 1 MiB: specs and prompts are text a human reviews
MAX_NODES = 50_000  # after alias expansion; a "billion laughs" document stops here
ROLLOUTS_DIR = "rollouts"
CONFIG_FILE = f"{ROLLOUTS_DIR}/controller.yaml"
ROLLOUT_FILE = "rollout.yaml"
_ROLES = ("stable", "canary", "previous")

M = TypeVar("M", bound=BaseModel)


class PathEscapes(Exception):
    """A path (or a symlink on it) leads outside the repository."""


class Tree(Protocol):
    """A read-only view of a repository: the working tree or one git commit."""

    def read(self, path: str) -> bytes:
        """The bytes of a file; FileNotFoundError if absent, PathEscapes if it leads outside."""
        ...

    def listdir(self, path: str) -> list[str]:
        """The names in a directory, sorted; [] if it is absent."""
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
    prompts: dict[str, str]  # "stable"/"canary" -> prompt path relative to the repository root
    prompt_digests: dict[str, str] = field(default_factory=dict)  # role -> sha256 of the prompt bytes
    prompt_texts: dict[str, str] = field(default_factory=dict)  # role -> the prompt file's text

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


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def _text(path: str, data: bytes) -> str:
    """The file as text, or SpecError if it is too large, not UTF-8, or binary."""
    if len(data) > MAX_FILE_BYTES:
        raise _fail(path, f"file is larger than {MAX_FILE_BYTES // 1024} KiB", code="E006")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _fail(path, "file is not valid UTF-8", line=line, code="E006") from exc
    if "\x00" in text:
        raise _fail(path, "file contains NUL bytes; is it binary?", code="E006")
    return text


def parse_yaml(path: str, data: bytes) -> Document:
    """Parse one YAML file safely: size, encoding, duplicate keys, alias bombs and syntax."""
    text = _text(path, data)
    try:
        tree = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        if "block" in problem:
            problem += " (check the indentation)"
        if "duplicate key" in problem or "found duplicate key" in str(exc):
            problem = _duplicate_key_message(exc)
        raise _fail(
            path,
            problem,
            line=mark.line + 1 if mark else 0,
            column=mark.column + 1 if mark else 0,
            code="E001",
        ) from exc
    except YAMLError as exc:
        raise _fail(path, f"invalid YAML: {exc}", code="E001") from exc
    _check_size(path, tree)
    return Document(path, tree)


def _duplicate_key_message(exc: MarkedYAMLError) -> str:
    problem = exc.problem or ""
    key = problem.split('"')[1] if problem.count('"') >= 2 else ""
    return f"duplicate key {key!r}" if key else "duplicate key"


def _check_size(path: str, tree: Any) -> None:
    """Refuse documents whose alias expansion would be huge (the 'billion laughs')."""
    budget = MAX_NODES
    stack = [tree]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise _fail(path, f"document expands to more than {MAX_NODES} nodes (alias bomb?)", code="E006")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _fail(path: str, message: str, *, line: int = 0, column: int = 0, code: str) -> errors.SpecError:
    return errors.SpecError([errors.Problem(path, line, column, "", message, code)])


# -- the fast path: plain data, no positions --------------------------------------------------------

# Text that libyaml and the round-trip loader could read differently. Values: tags (round-trip keeps
# `!!str 1` as a TaggedScalar), anchors and aliases (an anchored `true` is an int there), merge keys
# (another key order) and directives (`%YAML 1.1`). Syntax that libyaml accepts and the round-trip
# loader refuses: tabs, the line breaks of YAML 1.1 (NEL, LS, PS), and in block scalars (`|`, `>`) a
# comment glued to the header or a blank line with spaces. Such a file takes the round-trip path; it is
# rare in a spec, and a false alarm (`"a &b"`, `x > y`) only costs time.
_ROUND_TRIP_ONLY = re.compile(r"(?:^|[\s\[{,:])(?:!|[&*][^\s\[\]{},])|<<|(?:^|\n)%|[\t\x85\u2028\u2029]|(?:^|\s)[|>]")
_STR, _MAP, _SEQ = (f"tag:yaml.org,2002:{t}" for t in ("str", "map", "seq"))
_SCALARS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "timestamp"))


class _NotPlain(Exception):
    """The fast path declines a document; the round-trip parse answers for it."""


def _plain_yaml(text: str) -> Any:
    """The data of a YAML document as dicts, lists and scalars, without comments or positions: parsed by
    libyaml where ruamel.yaml.clib is installed (ten times faster than ruamel's pure-Python parser),
    resolved by YAML 1.2's rules as in the round-trip loader. Raises for what it does not read the same."""
    if _C_LOADER is not None:
        loader = _C_LOADER(text)
        try:
            node = loader.get_single_node()
            return None if node is None else _construct(loader, node, [MAX_NODES])
        finally:
            loader.dispose()
    yaml = YAML(typ="safe", pure=True)
    node = yaml.compose(text)
    return None if node is None else _construct(yaml.constructor, node, [MAX_NODES])


def _construct(constructor: Any, node: Any, budget: list[int]) -> Any:
    """Mappings, sequences and strings are built here (ruamel's generic construction costs more than
    libyaml's parse), other scalars by ruamel's safe constructor. A duplicate key, a key that is not a
    scalar, a tag other than YAML 1.2's implicit ones and a document of more than MAX_NODES nodes are
    declined."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _NotPlain(f"more than {MAX_NODES} nodes")
    tag = node.tag
    if isinstance(node, ScalarNode):
        if tag == _STR:
            return node.value
        if tag in _SCALARS:
            return constructor.construct_object(node)
    elif isinstance(node, MappingNode) and tag == _MAP:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(constructor, key_node, budget)
            if isinstance(key, dict | list) or key in out:
                raise _NotPlain(f"duplicate or unhashable key {key!r}")
            out[key] = _construct(constructor, value_node, budget)
        return out
    elif isinstance(node, SequenceNode) and tag == _SEQ:
        return [_construct(constructor, item, budget) for item in node.value]
    raise _NotPlain(f"tag {tag}")


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
    if not _ROUND_TRIP_ONLY.search(text):
        try:
            return model.model_validate(_plain_yaml(text))
        except Exception:  # whatever the fast path refuses, the round-trip parse below answers and locates
            pass
    return validate(model, parse_yaml(path, data), code=code)


# -- locating pydantic errors ----------------------------------------------------------------------


def field_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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
        known = _field_names(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        return "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
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
        r"^\S+$": ": must not contain spaces",
    }
    return hints.get(pattern, f" (expected to match {pattern})")


def _field_names(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The field names (as spelled in YAML) of the model found at `loc`, for 'did you mean'."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        info = getattr(current, "model_fields", {})
        match = next((f for n, f in info.items() if (f.alias or n) == part), None)
        current = _model_of(match.annotation) if match else None
    fields = getattr(current, "model_fields", {})
    return [f.alias or n for n, f in fields.items()]


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if (found := _model_of(arg)) is not None:
            return found
    return None


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
            message = _message(error, model, [p for p in loc if not _is_tag(p)])
            problems.append(errors.Problem(doc.path, line, column, field_path(found), message, code))
        raise errors.SpecError(_dedupe(problems)) from None


def _is_tag(part: str | int) -> bool:
    return isinstance(part, str) and part[:1].isupper()


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
    try:
        data = tree.read(CONFIG_FILE)
    except FileNotFoundError:
        raise _fail(
            CONFIG_FILE, "file is missing: every rollouts repository names its routers here", code="E006"
        ) from None
    except PathEscapes:
        raise _fail(CONFIG_FILE, "path leads outside the repository", code="E004") from None
    return load_model(spec.ControllerConfig, CONFIG_FILE, data)


def rollout_files(tree: Tree) -> Iterator[str]:
    """`rollouts/<name>/rollout.yaml`, sorted by name."""
    for name in tree.listdir(ROLLOUTS_DIR):
        if ROLLOUT_FILE in tree.listdir(f"{ROLLOUTS_DIR}/{name}"):
            yield f"{ROLLOUTS_DIR}/{name}/{ROLLOUT_FILE}"


def load_rollout(tree: Tree, path: str, config: spec.ControllerConfig) -> LoadedRollout:
    """Load and check one rollout file against the config. Raises SpecError with every problem found."""
    try:
        data = tree.read(path)
    except FileNotFoundError:
        raise _fail(path, "file is missing", code="E006") from None
    except PathEscapes:
        raise _fail(path, "path leads outside the repository", code="E004") from None
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

    revisions: dict[str, str] = {}
    prompts: dict[str, str] = {}
    digests: dict[str, str] = {}
    texts: dict[str, str] = {}
    for role in _ROLES:
        variant: spec.Variant | None = getattr(s, role)
        if variant is None:
            continue
        body: bytes | None = None
        if variant.prompt is not None:
            resolved, body, why = _read_prompt(tree, path, variant.prompt)
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
    return LoadedRollout(path, rollout, revisions, prompts, digests, texts)


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
    if len(body) > MAX_FILE_BYTES:
        return resolved, None, f"prompt file {resolved!r} is larger than {MAX_FILE_BYTES // 1024} KiB"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return resolved, None, f"prompt file {resolved!r} is not valid UTF-8 text"
    return resolved, body, ""


def load_repo(tree: Tree, *, only: Sequence[str] | None = None) -> RepoSpec:
    """Load the config and every rollout. A broken rollout is reported and skipped; the rest load.

    `only` limits which rollout files are reported on (for `rollout validate FILE`), but every
    rollout is still read so that conflicts between them are found.
    """
    try:
        config = load_config(tree)
    except errors.SpecError as exc:
        return RepoSpec(config=None, problems=exc.problems)
    repo = RepoSpec(config=config)
    taken: dict[tuple[str, str], str] = {}
    for path in rollout_files(tree):
        try:
            loaded = load_rollout(tree, path, config)
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
        if not isinstance(router, spec.LitellmRouter) or router.proxy_config is None:
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
    try:
        doc = parse_yaml(path, data)
    except errors.SpecError as exc:
        return f"the proxy config {path!r} cannot be read: {exc.problems[0]}"
    found = carries.strategy_problem(_plain(doc.data), routes=routes)
    if found is None:
        return ""
    line = locate(doc.data, found[0])[0]
    return f"the proxy config {path}{f':{line}' if line else ''}: {found[1]}"

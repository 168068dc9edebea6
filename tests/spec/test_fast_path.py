"""The fast path of loading: libyaml's plain data on the happy path, the round-trip parse for errors.

`load.load_model` reads a valid file through `_plain_yaml` only and falls back to the round-trip
loader for anything else. These tests hold the two to one another: valid snippets give the same values,
the text that could read differently is routed to the round-trip loader, duplicate keys are refused,
and every corpus case gives exactly the result and the located errors of the round-trip path.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from ruamel.yaml import YAML

from controller import errors, load, repo, spec
from tests.helpers import corpus, examples

EXAMPLES = examples.FIXTURE  # the tests' repository: three rollouts with comments, crons, flow mappings


@pytest.fixture(params=["libyaml", "pure"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both ways the fast path parses: libyaml (ruamel.yaml.clib) and, where that is missing, ruamel's
    pure-Python parser."""
    if request.param == "pure":
        monkeypatch.setattr(load, "_C_LOADER", None)
    else:
        assert load._C_LOADER is not None, "ruamel.yaml.clib is a dependency: pip install -e ."
    yield request.param


def round_trip(text: str) -> Any:
    return load._plain(load.parse_yaml("x.yaml", text.encode()).data)


_BASES = (bool, int, float, str, datetime, date, type(None), bytes)


def shape(value: Any) -> Any:
    """The value with every scalar's type reduced to its builtin base (round-trip's ScalarFloat is a
    float), so that `shape(a) == shape(b)` compares types as well as values."""
    if isinstance(value, dict):
        return {shape(k): shape(v) for k, v in value.items()}, "dict"
    if isinstance(value, list):
        return [shape(v) for v in value], "list"
    base = next(b for b in _BASES if isinstance(value, b))
    return base.__name__, base(value) if base not in (type(None), datetime, date) else value


def test_libyaml_is_installed() -> None:
    if platform.python_implementation() != "CPython":
        pytest.skip("ruamel.yaml.clib is only a dependency on CPython")
    assert load._C_LOADER is not None


# -- values: the same through both paths ----------------------------------------------------------

SAME = {
    "bench-rollout": (
        "apiVersion: rollouts/v1\nkind: Rollout\nmetadata:\n  name: bot-0001\nspec:\n  router: local\n"
        "  route: bot-0001-route\n  stable: {model: acme/chat-2025-01-01, prompt: prompts/v1.md}\n"
        "  steps:\n    - {shadow: 100, for: 1h, minSamples: 100}\n    - {weight: 100}\n"
        "  analysis:\n    gates:\n      - {use: eval_pass_rate, maxDrop: 2%, onFail: rollback}\n"
    ),
    "yaml-1.1-booleans-are-strings": "a: yes\nb: no\nc: on\nd: off\ne: y\nf: N\n",
    "booleans": "a: true\nb: False\nc: TRUE\n",
    "nulls": "a: ~\nb: null\nc: Null\nd:\ne: ''\n",
    "ints": "a: 12\nb: -3\nc: +4\nd: 0o17\ne: 0x1F\nf: 1_000\ng: 0777\nh: 0b101\n",
    "floats": "a: 1.5\nb: 1e3\nc: .5\nd: -.inf\ne: 1.\nf: 6.02E+23\ng: 0.0\n",
    "sexagesimal-is-a-string": "a: 1:30\nb: 190:20:30\n",
    "versions-are-strings": "a: 1.2.3\nb: v1\nc: 2025-01\n",
    "dates": "a: 2025-01-01\nb: 2025-01-01T10:00:00Z\nc: 2025-01-01 10:00:00+02:00\nd: 2025-01-01T10:00:00.5\n",
    "quoted": "a: '  it''s  '\nb: \"tab\\tnew\\nline \\u00e9 \\x41 \\/\"\nc: '1'\nd: \"true\"\n",
    "folded-quoted": "a: \"one\n  two\n\n  three\"\nb: 'x\n  y'\n",
    "multi-line-plain": "a: one\n  two\n  three\nb: x\n",
    "comments": "# head\na: 1  # trailing\n# between\nb:   # empty\n  - x  # item\n",
    "prose-in-comments": "# stable -> canary when x > y | z\na: 1  # see &anchor, *alias, !tag, <<\n",
    "marker-in-a-quoted-scalar-going-on": 'a: "one\n  two # &x !y > z\n  three"\n',  # content, not syntax
    "document-markers": "---\na: 1\n...\n",
    "empty-document": "",
    "only-a-comment": "# nothing here\n",
    "flow": "a: {b: [1, 2, {c: d}], e: []}\nf: {}\ng: [x, 'y, z']\n",
    "nested-block": "a:\n  b:\n    - c: 1\n      d: [2]\n    -\n      - e\n",
    "non-string-keys": "1: a\nnull: b\nfalse: c\n1.5: d\n",
    "explicit-key": "? a\n: 1\n",
    "unicode": "name: café\nemoji: 🚀\n日本: 語\n",
    "cron-is-not-an-alias": 'freeze: [{cron: "0 16 * * 5", duration: 64h}]\nx: a * b\n',
    "special-plain": "a: -x\nb: x:y\nc: http://h:9090/p?q=1#f\nd: a#b\ne: '#'\nf: 5%\n",
    "json": '{"a": [1, 2.5, "x", null, true], "b": {"c": "d"}}',
    "long-line": "a: " + "word " * 200 + "\n",
    "crlf": "a: 1\r\nb: [x, y]\r\nc: 'q\r\n  r'\r\n",
    "cr-only": "a: 1\rb: 2\r",
    "byte-order-mark": "\ufeffa: 1\nb: x\n",
}


@pytest.mark.parametrize("text", SAME.values(), ids=SAME.keys())
def test_valid_yaml_reads_the_same(text: str, loader: str) -> None:
    assert not load._round_trip_only(text), "this snippet must exercise the fast path"
    assert shape(load._plain_yaml(text)) == shape(round_trip(text))


# -- text that goes to the round-trip loader --------------------------------------------------------

ROUND_TRIP_ONLY = {
    "tag": "a: !!str 1\n",  # round-trip reads a TaggedScalar, the safe loader the string '1'
    "local-tag": "a: !thing x\n",
    "non-specific-tag": "a: ! 12\n",
    "anchor": "a: &x true\nb: *x\n",  # an anchored scalar keeps its own type in round-trip
    "alias-in-flow": "a: [&x 1, *x]\n",
    "merge": "base: {p: 1}\nc:\n  <<: {p: 2, q: 3}\n",  # the two put merged keys in another order
    "directive": "%YAML 1.1\n---\na: yes\n",  # 1.1: round-trip reads True, libyaml's resolver 'yes'
    "tab": "a:\tb\n",  # libyaml takes tabs where round-trip refuses them
    "nel": "a: x\x85y\n",
    "line-separator": "a: x\u2028y\n",
    "block-literal": "a: |\n  line\n",  # block scalars: libyaml takes blank lines round-trip refuses
    "block-folded": "a: >-\n  line\n",
    "block-top-level": "|\n  x\n",
    "second-byte-order-mark": "\ufeff\ufeffa: 1\n",  # libyaml drops both, round-trip keeps one in the key
    "byte-order-mark-in-a-key": "a: 1\n\ufeffb: 2\n",
    # a line with a quote character is searched whole: its `#` may sit in a quoted scalar that ends there
    "anchor-after-a-quoted-hash": "a: ['x\n  y # z', &w true]\n",
    "tab-in-a-comment": "a: 1  #\tnote\n",
    "line-separator-in-a-comment": "a: 1  # x\u2028b: 2\n",
}


@pytest.mark.parametrize("text", ROUND_TRIP_ONLY.values(), ids=ROUND_TRIP_ONLY.keys())
def test_text_that_could_read_differently_takes_the_round_trip_path(text: str) -> None:
    assert load._round_trip_only(text)


@pytest.mark.parametrize(
    "tagged",
    ["model: !!str acme/x", "model: acme/x, params: !!python/object:os.system {a: 1}", "model: !local acme/x"],
    ids=["core-tag", "python-tag-on-a-mapping", "local-tag"],
)
def test_a_tag_is_refused_by_both_paths_at_its_line(tagged: str, loader: str) -> None:
    """The loaders disagree on tags: the safe one reads `!!str x` as 'x', round-trip keeps a TaggedScalar,
    and a tag on a mapping used to vanish silently. Neither reads one: both refuse it, at its line."""
    text = corpus.VALID_ROLLOUT.replace("model: acme/chat-2025-01-01, prompt: prompts/v1.md", tagged)
    with pytest.raises(load._Refused):
        load._plain_yaml(text)
    fast = outcome(lambda: load.load_model(spec.Rollout, corpus.ROLLOUT, text.encode()))
    slow = outcome(lambda: load.validate(spec.Rollout, load.parse_yaml(corpus.ROLLOUT, text.encode())))
    assert fast == slow
    assert fast[0] == "error" and fast[1][0].startswith(f"{corpus.ROLLOUT}:8:"), fast
    assert "is not allowed: specs are plain data" in fast[1][0]


# -- what the fast path declines: the round-trip path answers ---------------------------------------

DECLINED = {
    "duplicate-key": "a: 1\nb: 2\na: 3\n",
    "duplicate-nested-key": "a:\n  b: 1\n  b: 1\n",
    "duplicate-flow-key": "a: {b: 1, b: 2}\n",
    "duplicate-equal-keys": "1: a\n0x1: b\n",
    "duplicate-true-and-1": "1: a\ntrue: b\n",
    "sequence-key": "? [1, 2]\n: x\n",
    "mapping-key": "? {a: 1}\n: x\n",
    "two-documents": "a: 1\n---\nb: 2\n",
    "bad-indentation": "a:\n  b: 1\n c: 2\n",
    "unclosed-flow": "a: [1, 2\n",
    "unclosed-quote": "a: 'x\n",
    "mapping-in-plain": "a: b: c\n",
}


@pytest.mark.parametrize("text", DECLINED.values(), ids=DECLINED.keys())
def test_the_fast_path_declines(text: str, loader: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - any exception: load_model then asks the round-trip loader
        load._plain_yaml(text)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (DECLINED["duplicate-key"], "r.yaml:3:1: duplicate key 'a'"),
        (DECLINED["duplicate-nested-key"], "r.yaml:3:3: duplicate key 'b'"),
        (DECLINED["duplicate-flow-key"], "r.yaml:1:11: duplicate key 'b'"),
    ],
    ids=["block", "nested", "flow"],
)
def test_duplicate_keys_are_refused_with_their_line(text: str, where: str, loader: str) -> None:
    with pytest.raises(errors.SpecError) as caught:
        load.load_model(spec.Rollout, "r.yaml", text.encode())
    assert [(str(p), p.code) for p in caught.value.problems] == [(where, "E001")]


def test_what_only_libyaml_refuses_loads_through_the_round_trip_path() -> None:
    """`[a:b]` is one plain scalar to the round-trip loader (YAML 1.2) and an error to libyaml: the file
    is valid, so load_model returns what the round-trip path reads."""
    text = corpus.VALID_ROLLOUT.replace("prompt: prompts/v1.md}", "prompt: prompts/v1.md, params: {tags: [a:b]}}")
    if load._C_LOADER is not None:
        with pytest.raises(Exception):  # noqa: B017 - whatever libyaml raises
            load._plain_yaml(text)
    loaded = load.load_model(spec.Rollout, corpus.ROLLOUT, text.encode())
    assert loaded.spec.stable.params == {"tags": ["a:b"]}
    assert loaded == load.validate(spec.Rollout, load.parse_yaml(corpus.ROLLOUT, text.encode()))


def test_alias_bomb_is_refused_by_both_paths(loader: str) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcde", "bcdef", strict=True)
    )
    with pytest.raises(errors.SpecError, match="alias bomb"):
        load.load_model(spec.Rollout, "r.yaml", bomb.encode())
    with pytest.raises(errors.SpecError, match="alias bomb"):
        load.parse_yaml("r.yaml", bomb.encode())
    big = "a: [" + ", ".join(["1"] * (load.MAX_NODES + 1)) + "]\n"  # no alias at all: the node budget
    with pytest.raises(load._Refused):
        load._plain_yaml(big)


# -- every corpus case: the same result, the same located errors ------------------------------------


def outcome(read: Callable[[], BaseModel]) -> tuple[str, Any]:
    try:
        return "ok", read().model_dump()
    except errors.SpecError as exc:
        return "error", [str(p) for p in exc.problems]


def corpus_files() -> Iterator[Any]:
    """Every spec file of both corpora (tests/corpus/invalid, tests/helpers/corpus.py) and the valid base."""
    for case in corpus.LOCATED_CASES:
        text = case.read_bytes()
        header = corpus.HEADER.match(text.decode("utf-8", "replace").splitlines()[0])
        path = load.CONFIG_FILE if header and header["target"] == "controller" else corpus.ROLLOUT
        yield pytest.param(path, text, id=f"invalid/{case.stem}")
    for c in corpus.CASES:
        for i, (path, data) in enumerate(((c.path, c.data), *c.extra)):
            if path in (corpus.ROLLOUT, corpus.CONFIG):
                yield pytest.param(path, data, id=f"{c.id}+{i}" if i else c.id)
    yield pytest.param(corpus.ROLLOUT, corpus.VALID_ROLLOUT.encode(), id="valid-rollout")
    yield pytest.param(corpus.CONFIG, corpus.VALID_CONFIG.encode(), id="valid-config")


@pytest.mark.parametrize(("path", "data"), list(corpus_files()))
def test_corpus_reads_as_the_round_trip_path_reads_it(path: str, data: bytes, loader: str) -> None:
    model: type[BaseModel] = spec.ControllerConfig if path == corpus.CONFIG else spec.Rollout
    fast = outcome(lambda: load.load_model(model, path, data))
    assert fast == outcome(lambda: load.validate(model, load.parse_yaml(path, data)))


def test_errors_found_after_validation_are_still_located(tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    (root / corpus.ROLLOUT).write_text(corpus.VALID_ROLLOUT.replace("router: local", "router: nowhere"))
    result = load.load_repo(repo.WorkTree(root))
    assert [str(p) for p in result.problems] == [
        "rollouts/case/rollout.yaml:6:11: spec.router: unknown router 'nowhere'; controller.yaml names "
        "['edge', 'local']"
    ]


def test_validation_errors_are_located(tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    (root / corpus.ROLLOUT).write_text(corpus.VALID_ROLLOUT.replace("{weight: 5, for: 2h}", "{weight: 150, for: 2h}"))
    result = load.load_repo(repo.WorkTree(root))
    assert [str(p) for p in result.problems] == [
        "rollouts/case/rollout.yaml:12:16: spec.steps[1].weight: must be between 0 and 100"
    ]


# -- the fast path is the one taken -----------------------------------------------------------------


def test_valid_repositories_load_without_the_round_trip_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loader: str
) -> None:
    """The examples and the corpus's valid repository, with comments, cron strings and flow mappings:
    if the fast path declined any of them (and the fallback hid it), this would fail."""
    load._PARSED.clear()

    def refuse(path: str, data: bytes) -> load.Document:
        raise AssertionError(f"{path} went through the round-trip parse")

    monkeypatch.setattr(load, "parse_yaml", refuse)
    for root in (EXAMPLES, corpus.make_repo(tmp_path)):
        result = load.load_repo(repo.WorkTree(root))
        assert result.problems == [] and result.rollouts, root


# -- any data a YAML writer produces --------------------------------------------------------------

_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
_DATA = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.text(max_size=8), _DATA, max_size=5), flow=st.booleans())
def test_whatever_ruamel_writes_reads_the_same_or_is_declined(data: dict[str, Any], flow: bool, loader: str) -> None:
    yaml = YAML(typ="rt")
    yaml.default_flow_style = flow
    yaml.width = 60  # long strings fold over lines
    out: list[str] = []
    yaml.dump(data, type("Sink", (), {"write": lambda _, s: out.append(s.decode() if isinstance(s, bytes) else s)})())
    text = "".join(out)
    if load._round_trip_only(text):
        return
    try:
        fast = load._plain_yaml(text)
    except Exception:  # declined (libyaml refuses the flow mapping `{':0': }`): load_model asks round-trip
        return
    assert shape(fast) == shape(round_trip(text))  # and never takes what the round-trip loader refuses


# -- hostile documents: both paths refuse the same ones, at the same place ----------------------------


@st.composite
def hostile_node(draw: st.DrawFn, depth: int = 0) -> str:
    """Flow YAML around the bounds: deep spines (nesting near MAX_DEPTH), anchors that repeat, aliases to
    defined, undefined and enclosing anchors, tags, and escapes that make lone surrogates."""
    anchor = draw(st.sampled_from(["", "", "", "&a ", "&b "]))
    kinds = ["scalar", "alias", "seq", "map", "spine"] if depth < 6 else ["scalar", "alias"]
    kind = draw(st.sampled_from(kinds))
    if kind == "alias":
        return draw(st.sampled_from(["*a", "*b", "*c"]))
    if kind == "scalar":
        scalar = draw(
            st.sampled_from(["1", "x", "'q'", "-2.5", "true", "~", '"\\ud800"', "!!str 3", "!t y", "2025-02-30"])
        )
        return anchor + scalar
    if kind == "spine":
        levels = draw(st.integers(min_value=55, max_value=70))
        return anchor + "[" * levels + draw(hostile_node(depth + 1)) + "]" * levels
    items = draw(st.lists(hostile_node(depth + 1), max_size=3))
    if kind == "seq":
        return anchor + "[" + ", ".join(items) + "]"
    return anchor + "{" + ", ".join(f"k{i}: {v}" for i, v in enumerate(items)) + "}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(hostile_node(), min_size=1, max_size=4))
def test_hostile_documents_get_the_same_answer_through_both_paths(values: list[str], loader: str) -> None:
    """Whatever the document, loading never raises anything but SpecError, and the fast path's answer
    (its own refusal at a bound, or the round-trip parse's) is the round-trip path's."""
    text = "".join(f"x{i}: {v}\n" for i, v in enumerate(values)).encode()
    fast = outcome(lambda: load.load_model(spec.Rollout, corpus.ROLLOUT, text))
    assert fast == outcome(lambda: load.validate(spec.Rollout, load.parse_yaml(corpus.ROLLOUT, text)))

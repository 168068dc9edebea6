"""The bad-input corpus, shared by tests/corpus, tests/spec, tests/judge and bench/hostile_input.py.

`LOCATED_CASES`: the files in tests/corpus/invalid, each failing with the file:line:col and message its
first line (`HEADER`) names. `CASES`, `HOSTILE` and `FILES`, beyond those: controller config, gate
templates (PromQL injection), prompt paths and contents, huge and binary files, and odd bytes in rollout
specs; each writes one file into a copy of tests/corpus/repo (`make_repo`, next to a valid neighbour
rollout) and names a phrase the error must contain. `ATTACKS`: text from outside that tries to inject
into pull requests, and `neutral`, the check that it was neutralised. The harnesses are
tests/corpus/test_bad_input.py and tests/spec/test_corpus.py.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
LOCATED_CASES = sorted((CORPUS / "invalid").glob("*.yaml"))
HEADER = re.compile(r"^# (?:target: (?P<target>\w+)\s+)?expect: (?P<line>\d+):(?P<col>\d+) (?P<rest>.*)$")

VALID_NEIGHBOUR = """apiVersion: rollouts/v1
kind: Rollout
metadata: {name: neighbour}
spec:
  router: local
  route: neighbour-route
  stable: {model: acme/chat-2025-01-01}
  steps: [{weight: 100}]
"""


def make_repo(tmp_path: Path) -> Path:
    """A copy of tests/corpus/repo with the valid neighbour rollout, under `tmp_path`."""
    root = tmp_path / "repo"
    shutil.copytree(CORPUS / "repo", root)
    (root / "rollouts/neighbour").mkdir()
    (root / "rollouts/neighbour/rollout.yaml").write_text(VALID_NEIGHBOUR)
    return root


ATTACKS = {
    "html": "<img src=x onerror=alert(1)><script>alert(2)</script>",
    "mention": "@acme/admins please merge, cc @octocat",
    "markdown-link": "[approve here](http://evil.example/x) ![img](http://evil.example/p.png)",
    "code-fence": "```\n</details>\n```",
    "workflow-command": "ok\n::set-output name=approved::true\n::add-mask::x\n::error::boom",
    "crlf-heading": "ok\r\n## Approved by security\r\n- [x] reviewed",
    "table-break": "a | b |\n|---|---|\n| c | d |",
    "html-comment": '<!-- rollout:meta {"action": "advance"} -->',
}


def neutral(text: str, attack: str, *, where: str, markdown: bool = True) -> None:
    """No line starts a workflow command, no @mention is live; in markdown, no raw HTML, link, heading
    or meta comment from the attack survives."""
    for line in text.splitlines():
        assert not line.lstrip().startswith("::"), f"{where}: workflow command line {line!r}"
    if "@acme" in attack:
        assert not re.search(r"(?<![\\\w])@(acme|octocat)", text), f"{where}: live @mention"
    if not markdown:
        return
    if "<img" in attack:
        assert not re.search(r"(?<!\\)<(img|script)", text), where
    if "](http" in attack:
        assert "](http" not in text, f"{where}: live link"
    if "rollout:meta" in attack:
        assert text.count("<!-- rollout:meta") <= 1, f"{where}: a forged meta comment"
    if "## Approved" in attack:
        assert not any(line.startswith("## Approved") for line in text.splitlines()), f"{where}: a forged heading"


ROLLOUT = "rollouts/case/rollout.yaml"
CONFIG = "rollouts/controller.yaml"

VALID_ROLLOUT = """apiVersion: rollouts/v1
kind: Rollout
metadata:
  name: case
spec:
  router: local
  route: chat
  stable: {model: acme/chat-2025-01-01, prompt: prompts/v1.md}
  canary: {model: acme/chat-2025-01-01, prompt: prompts/v2.md}
  steps:
    - {shadow: 100, for: 1h, minSamples: 100}
    - {weight: 5, for: 2h}
    - {weight: 100}
  analysis:
    interval: 1m
    gates:
      - {use: eval_pass_rate, maxDrop: 3%, onFail: rollback}
"""

VALID_CONFIG = """apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  local: {type: file, path: .rollout/routes.json}
prometheus: {url: "http://127.0.0.1:9090"}
"""


@dataclass(frozen=True)
class Case:
    id: str
    path: str  # the file the case writes
    data: bytes
    expect: str  # a phrase the error names (case-insensitive)
    extra: tuple[tuple[str, bytes], ...] = ()  # more files (e.g. a rollout that uses a bad gate template)

    @property
    def target(self) -> str:
        return "controller" if self.path == CONFIG else "rollout"


def rollout(old: str, new: str) -> bytes:
    assert old in VALID_ROLLOUT, old
    return VALID_ROLLOUT.replace(old, new, 1).encode()


def config(extra: str) -> bytes:
    return (VALID_CONFIG + extra).encode()


def with_template(name: str, body: str, expect: str, case_id: str) -> Case:
    """A gate template in controller.yaml, used by the case rollout."""
    return Case(
        case_id,
        CONFIG,
        config(f"gateTemplates:\n  {name}:\n{body}"),
        expect,
        ((ROLLOUT, rollout("use: eval_pass_rate, maxDrop: 3%", f"use: {name}, max: 5%")),),
    )


HUGE = b"# " + b"x" * (1 << 20) + b"\n"

CASES: list[Case] = [
    # -- controller config --------------------------------------------------------------------------
    Case("config-empty", CONFIG, b"", "must be a mapping"),
    Case("config-list", CONFIG, b"- a\n- b\n", "must be a mapping"),
    Case("config-no-routers", CONFIG, b"apiVersion: rollouts/v1\nkind: ControllerConfig\n", "routers"),
    Case("config-kind", CONFIG, VALID_CONFIG.replace("ControllerConfig", "Rollout").encode(), "kind"),
    Case("config-unknown-field", CONFIG, config("tokens: {github: ghp_x}\n"), "unknown field"),
    Case("config-prom-javascript", CONFIG, VALID_CONFIG.replace("http://127", "javascript://127").encode(), "url"),
    Case(
        "config-prom-file-url",
        CONFIG,
        VALID_CONFIG.replace("http://127.0.0.1:9090", "file:///etc/passwd").encode(),
        "url",
    ),
    Case("config-forge-unknown", CONFIG, config("forge: {type: gitlab}\n"), "forge"),
    Case(
        "config-envoy-prompts-without-cds",
        CONFIG,
        VALID_CONFIG.replace(
            "  local:", "  edge: {type: envoy, admin: 'http://127.0.0.1:9901', promptsPath: p.json}\n  local:"
        ).encode(),
        "promptsPath: needs cdsPath",
    ),
    Case(
        "config-github-repo-injection",
        CONFIG,
        config("forge: {type: github, repository: 'a/b; rm -rf /'}\n"),
        "repository",
    ),
    Case(
        "config-token-env-injection",
        CONFIG,
        config("forge: {type: github, repository: a/b, tokenEnv: 'X=1 Y'}\n"),
        "tokenEnv",
    ),
    Case(
        "config-router-path-type",
        CONFIG,
        VALID_CONFIG.replace("type: file, path: .rollout/routes.json", "type: file, path: [1]").encode(),
        "path",
    ),
    Case("config-branch-type", CONFIG, config("branch: [main]\n"), "branch"),
    Case("config-huge", CONFIG, VALID_CONFIG.encode() + HUGE, "larger than"),
    Case("config-binary", CONFIG, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "utf-8"),
    Case("config-nul", CONFIG, VALID_CONFIG.encode() + b"\x00", "NUL"),
    Case("config-utf16", CONFIG, VALID_CONFIG.encode("utf-16"), "utf-8"),
    # -- gate templates: PromQL injection -----------------------------------------------------------
    with_template(
        "inj_or",
        "    kind: ratio\n    bad: 'llm_requests_total{code=\"500\"} or vector(1)'\n    total: llm_requests_total\n",
        "bad",
        "template-selector-or-vector",
    ),
    with_template(
        "inj_brace",
        '    kind: ratio\n    bad: \'llm_requests_total{code="5"}) or up{job=~".+"\'\n    total: llm_requests_total\n',
        "bad",
        "template-selector-brace-escape",
    ),
    with_template(
        "inj_func",
        "    kind: ratio\n    good: 'absent(llm_requests_total)'\n    total: llm_requests_total\n",
        "good",
        "template-selector-function",
    ),
    with_template(
        "inj_total",
        "    kind: ratio\n    good: llm_ok_total\n    total: 'llm_requests_total offset 1d'\n",
        "total",
        "template-total-offset",
    ),
    with_template(
        "inj_newline",
        '    kind: ratio\n    good: "llm_ok_total{a=\\"x\\"}\\n or vector(1)"\n    total: llm_requests_total\n',
        "good",
        "template-selector-newline",
    ),
    with_template(
        "both",
        "    kind: ratio\n    good: llm_ok_total\n    bad: llm_bad_total\n    total: llm_requests_total\n",
        "exactly one",
        "template-good-and-bad",
    ),
    with_template(
        "hist", "    kind: quantile\n    buckets: 'histogram_quantile(0.99, x)'\n", "buckets", "template-quantile-expr"
    ),
    with_template(
        "q", "    kind: quantile\n    buckets: x_bucket\n    quantile: 1.5\n", "quantile", "template-quantile-range"
    ),
    with_template("k", "    kind: sql\n    query: 'select 1'\n", "kind", "template-unknown-kind"),
    with_template("v", "    kind: value\n    query: ''\n", "query", "template-value-empty"),
    with_template("Bad-Name", "    kind: value\n    query: up\n", "gateTemplates", "template-name"),
    # -- prompt paths -------------------------------------------------------------------------------
    Case("prompt-backslash-dotdot", ROLLOUT, rollout("prompts/v2.md", "..\\\\case\\\\prompts\\\\v2.md"), "'..'"),
    Case("prompt-windows-drive", ROLLOUT, rollout("prompts/v2.md", "'C:\\\\prompts\\\\v2.md'"), "absolute"),
    Case("prompt-home", ROLLOUT, rollout("prompts/v2.md", "/root/.ssh/id_rsa"), "absolute"),
    # a prompt-only change on a router that cannot put the prompt in the request: a silent A/A test
    Case(
        "prompt-change-on-envoy-without-bundle",
        ROLLOUT,
        rollout("router: local", "router: edge"),
        "router 'edge' (envoy) cannot carry a prompt difference",
    ),
    Case("prompt-proc", ROLLOUT, rollout("prompts/v2.md", "/proc/self/environ"), "absolute"),
    Case("prompt-deep-dotdot", ROLLOUT, rollout("prompts/v2.md", "prompts/../../../../etc/passwd"), "'..'"),
    Case("prompt-directory", ROLLOUT, rollout("prompts/v2.md", "prompts"), "directory"),
    Case("prompt-empty-path", ROLLOUT, rollout("prompts/v2.md", "''"), "prompt"),
    Case("prompt-huge", "rollouts/case/prompts/v2.md", HUGE, "larger than"),
    Case("prompt-binary", "rollouts/case/prompts/v2.md", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "utf-8"),
    Case("prompt-latin1", "rollouts/case/prompts/v2.md", "Réponds en français.\n".encode("latin-1"), "utf-8"),
    # -- rollout specs: odd bytes, huge files, types -------------------------------------------------
    Case("rollout-huge", ROLLOUT, VALID_ROLLOUT.encode() + HUGE, "larger than"),
    Case("rollout-binary", ROLLOUT, bytes(range(256)), "utf-8"),
    Case("rollout-nul", ROLLOUT, VALID_ROLLOUT.encode().replace(b"chat\n", b"chat\x00\n"), "NUL"),
    Case("rollout-utf16", ROLLOUT, VALID_ROLLOUT.encode("utf-16"), "utf-8"),
    Case(
        "rollout-tab-indent",
        ROLLOUT,
        VALID_ROLLOUT.replace("  router:", "\trouter:").encode(),
        "a tab indents this line: YAML indents with spaces only",
    ),
    Case("rollout-scalar", ROLLOUT, b"just a string\n", "mapping"),
    Case("rollout-multi-doc", ROLLOUT, (VALID_ROLLOUT + "---\n" + VALID_ROLLOUT).encode(), "document"),
    Case(
        "rollout-python-tag",
        ROLLOUT,
        rollout("route: chat", "route: !!python/object/apply:os.system ['id']"),
        "rollout.yaml:7:10: YAML tag '!!python/object/apply:os.system' is not allowed",
    ),
    Case("rollout-route-injection", ROLLOUT, rollout("route: chat", "route: 'chat\"} or vector(1) #'"), "spec.route"),
    Case(
        "rollout-segment-injection",
        ROLLOUT,
        rollout(
            "      - {use: eval_pass_rate, maxDrop: 3%, onFail: rollback}",
            "      - {use: eval_pass_rate, maxDrop: 3%, onFail: rollback}\n    segments: ['tier\"}) or up{x=\"']",
        ),
        "segments",
    ),
    Case(
        "rollout-model-newline",
        ROLLOUT,
        rollout(
            "model: acme/chat-2025-01-01, prompt: prompts/v2.md",
            'model: "acme/x\\n::set-output name=a::b", prompt: prompts/v2.md',
        ),
        "model",
    ),
    Case("rollout-name-markdown", ROLLOUT, rollout("name: case", "name: '[click](http://x)'"), "metadata.name"),
    Case("rollout-name-mention", ROLLOUT, rollout("name: case", "name: '@acme/admins'"), "metadata.name"),
    Case(
        "rollout-name-workflow-cmd", ROLLOUT, rollout("name: case", "name: '::set-output name=x::y'"), "metadata.name"
    ),
    Case("rollout-name-html", ROLLOUT, rollout("name: case", "name: '<img src=x onerror=alert(1)>'"), "metadata.name"),
    Case(
        "rollout-status-message-huge",
        ROLLOUT,
        (
            VALID_ROLLOUT + "status: {revision: abc, step: 0, phase: Progressing, message: '" + "m" * 3000 + "'}\n"
        ).encode(),
        "status.message",
    ),
    Case(
        "rollout-status-phase",
        ROLLOUT,
        (VALID_ROLLOUT + "status: {revision: abc, step: 0, phase: Promoted}\n").encode(),
        "status.phase",
    ),
    Case(
        "rollout-status-step-negative",
        ROLLOUT,
        (VALID_ROLLOUT + "status: {revision: abc, step: -1, phase: Progressing}\n").encode(),
        "status.step",
    ),
    Case(
        "rollout-interval-zero",
        ROLLOUT,
        rollout("interval: 1m", "interval: 0s"),
        "spec.analysis.interval: must be at least 1s",
    ),
    Case("rollout-weight-bool", ROLLOUT, rollout("weight: 5, for: 2h", "weight: true, for: 2h"), "weight"),
    Case(
        "rollout-steps-many",
        ROLLOUT,
        rollout(
            "    - {weight: 100}", "".join(f"    - {{weight: {min(100, i // 10)}}}\n" for i in range(2000)).rstrip("\n")
        ),
        "steps",
    ),
]


# -- hostile input (issue 19): bounds that keep a spec from sending traffic by accident, and YAML or files
# that must never take the controller down. Each is refused, named by file (and line where there is one),
# without a traceback, in bounded time and memory (tests/corpus/test_hostile.py runs them through the CLI).


def params(flow: str) -> bytes:
    """The stable variant with `params: <flow>`, on line 8."""
    return rollout("prompt: prompts/v1.md}", f"prompt: prompts/v1.md, params: {flow}}}")


def appended(text: str) -> bytes:
    """The valid rollout and more top-level text after it (from line 18)."""
    return (VALID_ROLLOUT + text).encode()


ROOM = (512 << 10) - len(VALID_ROLLOUT) - 64  # bytes left under the 512 KiB limit of a YAML file
BIG = "x" * 500_000
# The round-trip parse's worst case under the limits: nearly MAX_NODES nodes and nearly 512 KiB, an error at
# the end (a file with a problem is parsed again to locate it), and the same with a tab, which sends a file
# through the round-trip parser from the start.
WIDE = "".join(f"    - {'w' * 46}\n" for _ in range(9_500))

HOSTILE: list[Case] = [
    # status and spec edits that could send traffic: bounds, never clamped
    Case(
        "status-step-beyond-the-steps",
        ROLLOUT,
        appended("status: {revision: 6fc33c1e4d1a, step: 9, phase: Progressing}\n"),
        "rollout.yaml:18:40: status.step: must be at most 2: spec.steps has 3 step(s)",
    ),
    Case(
        "status-step-40-digits",
        ROLLOUT,
        appended("status: {step: " + "9" * 40 + "}\n"),
        "status.step: must be at most 2",
    ),
    Case(
        "threshold-nan",
        ROLLOUT,
        rollout("maxDrop: 3%", "maxDrop: .nan"),
        "gates[0].maxDrop: must be a number, not .nan",
    ),
    Case("threshold-inf", ROLLOUT, rollout("maxDrop: 3%", "max: .inf"), "gates[0].max: must be finite, not .inf"),
    Case("threshold-1e400", ROLLOUT, rollout("maxDrop: 3%", "max: 1e400"), "gates[0].max: must be finite"),
    Case("threshold-400-digits", ROLLOUT, rollout("maxDrop: 3%", "max: " + "9" * 400), "must be at most 1000000000"),
    Case(
        "threshold-400-digit-percent", ROLLOUT, rollout("maxDrop: 3%", "max: " + "9" * 400 + "%"), "at most 1000000000"
    ),
    Case(
        "threshold-unicode-digits",
        ROLLOUT,
        rollout("maxDrop: 3%", "maxDrop: \u0663%"),
        "gates[0].maxDrop: must be a number",
    ),
    Case(
        "rate-min-150-percent",
        ROLLOUT,
        rollout("maxDrop: 3%", "min: 150%"),
        "gates[0].min: must be at most 100%: eval_pass_rate is a rate, so this limit could never pass",
    ),
    Case(
        "rate-max-150-percent",
        ROLLOUT,
        rollout("use: eval_pass_rate, maxDrop: 3%", "use: error_rate, max: 150%"),
        "gates[0].max: must be at most 100%: error_rate is a rate, so this limit could never fail",
    ),
    Case(
        "rate-max-drop-100-points",
        ROLLOUT,
        rollout("maxDrop: 3%", "maxDrop: 100%"),
        "gates[0].maxDrop: must be below 100%: eval_pass_rate is a rate, so a drop this large could never fail",
    ),
    Case(
        "rate-custom-template-max-drop",
        ROLLOUT,
        rollout("use: eval_pass_rate, maxDrop: 3%", "use: ok_rate, maxDrop: 1.5"),
        "gates[0].maxDrop: must be below 100%: ok_rate is a rate",
        (
            (
                CONFIG,
                config(
                    "gateTemplates:\n  ok_rate:\n    kind: ratio\n    good: llm_ok_total\n    total: llm_all_total\n"
                ),
            ),
        ),
    ),
    Case(
        "offline-eval-max-drop-100-points",
        ROLLOUT,
        appended("  offlineEval: {maxDrop: 100%}\n"),
        "spec.offlineEval.maxDrop: must be below 100%",
    ),
    Case(
        "offline-eval-min-pass-rate-200",
        ROLLOUT,
        appended("  offlineEval: {minPassRate: 2}\n"),
        "minPassRate: must be at most 100%",
    ),
    Case(
        "min-samples-40-digits",
        ROLLOUT,
        rollout("minSamples: 100", "minSamples: " + "9" * 40),
        "rollout.yaml:11:42: spec.steps[0].minSamples: must be at most 1000000000",
    ),
    Case(
        "weight-40-digits",
        ROLLOUT,
        rollout("weight: 5,", "weight: " + "9" * 40 + ","),
        "steps[1].weight: must be between 0 and 100",
    ),
    Case("weight-inf", ROLLOUT, rollout("weight: 5,", "weight: .inf,"), "steps[1].weight"),
    Case(
        "duration-overflows-timedelta",
        ROLLOUT,
        rollout("for: 1h", "for: 999999999999999999d"),
        "steps[0].for: must be at most 366d",
    ),
    Case(
        "duration-4400-digits",
        ROLLOUT,
        rollout("for: 1h", "for: " + "9" * 4400 + "s"),
        "steps[0].for: must be at most 366d",
    ),
    Case("duration-unicode-digits", ROLLOUT, rollout("for: 1h", "for: \u0661h"), "steps[0].for: must be a duration"),
    Case(
        "keep-previous-for-ever",
        ROLLOUT,
        appended("  keepPreviousFor: 100000d\n"),
        "keepPreviousFor: must be at most 366d",
    ),
    Case(
        "expected-rate-huge",
        ROLLOUT,
        rollout("interval: 1m", "interval: 1m\n    expectedRate: " + "9" * 50 + "/s"),
        "expectedRate: must be at most",
    ),
    Case(
        "freeze-never-fires",
        ROLLOUT,
        appended("  freeze: [{cron: '0 0 30 2 *', duration: 1h}]\n"),
        "freeze[0].cron: must be a cron expression that fires",
    ),
    Case(
        "gates-too-many",
        ROLLOUT,
        rollout(
            "      - {use: eval_pass_rate, maxDrop: 3%, onFail: rollback}", "      - {use: error_rate, max: 1%}\n" * 21
        ),
        "spec.analysis.gates: must have at most 20 item(s)",
    ),
    Case(
        "params-nan", ROLLOUT, params("{temperature: .nan}"), "spec.stable.params.temperature: must be a finite number"
    ),
    Case(
        "params-inf-deep", ROLLOUT, params("{a: [1, {b: -.inf}]}"), "spec.stable.params.a[1].b: must be a finite number"
    ),
    Case("params-json-nested-100", ROLLOUT, params('{"a": ' + "[" * 100 + "]" * 100 + "}"), "rollout.yaml:8:"),
    Case(
        "params-lone-surrogate",
        ROLLOUT,
        params('{a: "x\\ud800"}'),
        "rollout.yaml:8:76: a lone surrogate (\\uD800) is not a character",
    ),
    # names and paths that read as something else
    Case(
        "model-zero-width-space",
        ROLLOUT,
        rollout("acme/chat-2025-01-01, prompt: prompts/v2.md", "acme/chat\u200b-2025-01-01, prompt: prompts/v2.md"),
        "spec.canary.model: has an invalid format: use printable ASCII without spaces",
    ),
    Case(
        "model-homoglyph",
        ROLLOUT,
        rollout("acme/chat-2025-01-01, prompt: prompts/v2.md", "acme/ch\u0430t-2025-01-01, prompt: prompts/v2.md"),
        "spec.canary.model: has an invalid format",
    ),
    Case(
        "model-right-to-left-override",
        ROLLOUT,
        rollout("acme/chat-2025-01-01, prompt: prompts/v2.md", "acme/chat-\u202e10-1002, prompt: prompts/v2.md"),
        "spec.canary.model",
    ),
    Case(
        "prompt-right-to-left-override",
        ROLLOUT,
        rollout("prompts/v2.md", "prompts/\u202edm.2v"),
        "spec.canary.prompt: must not contain invisible or control characters (U+202E)",
    ),
    Case("name-homoglyph", ROLLOUT, rollout("name: case", "name: \u0441ase"), "metadata.name: has an invalid format"),
    Case(
        "prompt-name-too-long",
        ROLLOUT,
        rollout("prompts/v2.md", "prompts/" + "p" * 300 + ".md"),
        "cannot be read: File name too long",
    ),
    # YAML that must never take the controller down
    Case(
        "nested-list-5000",
        ROLLOUT,
        appended("x: " + "[" * 5000 + "]" * 5000 + "\n"),
        "rollout.yaml:18:67: nested more than 64 levels deep",
    ),
    Case(
        "nested-list-fills-the-file",
        ROLLOUT,
        appended("x: " + "[" * ROOM + "\n"),
        "rollout.yaml:18:67: nested more than 64 levels deep",
    ),
    Case(
        "nested-map-5000",
        ROLLOUT,
        appended("x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n"),
        "nested more than 64 levels deep",
    ),
    Case(
        "nested-block-fills-the-file",
        ROLLOUT,
        appended("x:\n" + "".join(" " * i + "- \n" for i in range(1, 1000))),
        "rollout.yaml:82:65: nested more than 64 levels deep",
    ),
    Case(
        "nested-by-aliases",  # each level shallow, the expansion 70 deep
        ROLLOUT,
        appended("a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]\n" for i in range(1, 8))),
        "nested more than 64 levels deep",
    ),
    Case(
        "alias-repeats-a-large-string",  # 517 KB on disk, 500 MB once expanded
        ROLLOUT,
        params("{a: &s '" + BIG + "', b: [" + ", ".join(["*s"] * 1000) + "]}"),
        "rollout.yaml:8:500091: document expands to more than 1024 KiB of text",
    ),
    Case(
        "alias-1000-times-1-5-kb",
        ROLLOUT,
        params("{a: &s '" + "y" * 1500 + "', b: [" + ", ".join(["*s"] * 1000) + "]}"),
        "document expands to more than 1024 KiB of text",
    ),
    Case(
        "alias-bomb-of-keys",
        ROLLOUT,
        appended(
            "k: &k0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 0}\n"
            + "".join(f"k{i}: &k{i} [{', '.join([f'*k{i - 1}'] * 10)}]\n" for i in range(1, 6))
        ),
        "document expands to more than 10000 nodes (alias bomb?)",
    ),
    Case(
        "alias-bomb-of-merge-keys",
        ROLLOUT,
        appended(
            "m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 0}\n"
            + "".join(f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}\n" for i in range(1, 6))
        ),
        "document expands to more than 10000 nodes (alias bomb?)",
    ),
    Case(
        "nodes-without-aliases",
        ROLLOUT,
        appended("x: [" + "1, " * 11_000 + "]\n"),
        "document expands to more than 10000 nodes",
    ),
    Case(
        "alias-self-reference",
        ROLLOUT,
        params("&p {temperature: 0, self: *p}"),
        "rollout.yaml:8:98: alias '*p' is inside the node its anchor names: a recursive structure is not allowed",
    ),
    Case(
        "alias-self-reference-list",
        ROLLOUT,
        appended("x: &l [1, *l]\n"),
        "rollout.yaml:18:11: alias '*l' is inside the node",
    ),
    Case("alias-mutual-reference", ROLLOUT, appended("x: &a {b: &b [*a]}\n"), "alias '*a' is inside the node"),
    Case(
        "anchor-defined-twice",
        ROLLOUT,
        params("{a: &x 1, b: &x 2, c: *x}"),
        "rollout.yaml:8:85: anchor '&x' is defined twice (first on line 8)",
    ),
    Case("alias-undefined", ROLLOUT, params("{a: *nothing}"), "rollout.yaml:8:76: found undefined alias 'nothing'"),
    Case(
        "tag-python-object-on-a-mapping",
        ROLLOUT,
        rollout("stable: {", "stable: !!python/object:os.system {"),
        "rollout.yaml:8:11: YAML tag '!!python/object:os.system' is not allowed: specs are plain data",
    ),
    Case(
        "tag-local-include",
        ROLLOUT,
        rollout("route: chat", "route: !include /etc/passwd"),
        "YAML tag '!include' is not allowed",
    ),
    Case("tag-binary", ROLLOUT, params("{a: !!binary aGVsbG8=}"), "YAML tag '!!binary' is not allowed"),
    Case(
        "integer-5000-digits",
        ROLLOUT,
        rollout("minSamples: 100", "minSamples: " + "9" * 5000),
        "rollout.yaml:11:42: an integer of 5000 digits is too long",
    ),
    Case(
        "timestamp-february-30",
        ROLLOUT,
        params("{d: 2025-02-30}"),
        "rollout.yaml:8:76: cannot read !!timestamp '2025-02-30': day is out of range",
    ),
    Case(
        "control-character",
        ROLLOUT,
        rollout("route: chat", "route: ch\x07at"),
        "rollout.yaml:7:12: character U+0007 is not allowed in YAML",
    ),
    Case(
        "terminal-escape-in-a-key",  # printed escaped: a terminal never acts on it
        ROLLOUT,
        appended('"\\e]0;pwned\\a\\e[31mred": 1\n'),
        "rollout.yaml:18:1: \\x1b]0;pwned\\x07\\x1b[31mred: unknown field",
    ),
    Case(
        "byte-order-mark-in-a-key",  # invisible: libyaml would drop it, so the round-trip parse answers
        ROLLOUT,
        rollout("kind: Rollout", "\ufeffkind: Rollout"),
        "rollout.yaml:2:1: \\ufeffkind: unknown field; did you mean 'kind'?",
    ),
    Case(
        "documents-20000",
        ROLLOUT,
        VALID_ROLLOUT.encode() + b"---\n" * 20_000,
        "rollout.yaml:18:1: but found another document",
    ),
    Case("empty-file", ROLLOUT, b"", "must be a mapping"),
    Case("only-a-bom", ROLLOUT, "\ufeff".encode(), "must be a mapping"),
    # controller.yaml, which every rollout shares: refused clearly, nothing applied
    Case(
        "config-nested-5000",
        CONFIG,
        config("x: " + "[" * 5000 + "]" * 5000 + "\n"),
        "controller.yaml:6:67: nested more than 64 levels deep",
    ),
    Case(
        "config-alias-bomb",
        CONFIG,
        config(
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcde", "bcdef", strict=True))
        ),
        "controller.yaml:9:36: document expands to more than 10000 nodes (alias bomb?)",
    ),
    Case("config-alias-self-reference", CONFIG, config("x: &r {a: *r}\n"), "alias '*r' is inside the node"),
    Case(
        "config-text-bomb",
        CONFIG,
        config("a: &s '" + BIG + "'\nb: [" + ", ".join(["*s"] * 1000) + "]\n"),
        "KiB of text",
    ),
    Case(
        "config-tag", CONFIG, VALID_CONFIG.replace("routers:", "routers: !!python/name:os.system").encode(), "YAML tag"
    ),
    Case(
        "config-integer-5000-digits",
        CONFIG,
        config("branch: " + "9" * 5000 + "\n"),
        "an integer of 5000 digits is too long",
    ),
    Case(
        "config-prometheus-timeout-a-year",
        CONFIG,
        VALID_CONFIG.replace('9090"}', '9090", timeout: 365d}').encode(),
        "prometheus.timeout: must be above 0s and at most 5m",
    ),
    Case(
        "config-prometheus-timeout-overflow",
        CONFIG,
        VALID_CONFIG.replace('9090"}', '9090", timeout: 99999999999999999999d}').encode(),
        "prometheus.timeout: must be at most 366d",
    ),
    Case(
        "config-github-app-id-40-digits",
        CONFIG,
        config("forge: {type: github, repository: a/b, app: {appId: " + "9" * 40 + ", installationId: 1}}\n"),
        "appId",
    ),
    with_template(
        "lat", "    kind: quantile\n    buckets: x_bucket\n    scale: .inf\n", "scale", "template-quantile-scale-inf"
    ),
    Case(
        "config-router-path-nul",
        CONFIG,
        VALID_CONFIG.replace("path: .rollout/routes.json", 'path: "routes\\0.json"').encode(),
        "routers.local.path: must not contain invisible or control characters (U+0000)",
    ),
    Case(
        "config-state-dir-escape",
        CONFIG,
        config('stateDir: "/srv/\\e[2J"\n'),
        "stateDir: must not contain invisible or control",
    ),
    # sizes: a YAML file is at most 512 KiB (a prompt 1 MiB), and the slowest files under that
    Case(
        "rollout-600-kib",
        ROLLOUT,
        VALID_ROLLOUT.encode() + b"# " + b"x" * (600 << 10) + b"\n",
        "file is larger than 512 KiB",
    ),
    Case(
        "round-trip-worst-error-at-the-end",
        ROLLOUT,
        appended("  x:\n" + WIDE + "  unknownField: 1\n"),
        "spec.unknownField: unknown field",
    ),
    Case(
        "round-trip-worst-tab",
        ROLLOUT,
        rollout("kind: Rollout", "kind: Rollout  #\ta tab") + b"x:\n" + WIDE.encode(),
        "x: unknown field",
    ),
]

CASES += HOSTILE


@dataclass(frozen=True)
class FileCase:
    """A file that is no regular file, or a symlink: made on disk by the harness (git cannot carry a FIFO)."""

    id: str
    path: str  # where it is made
    kind: str  # "fifo", "socket", "symlink" or "sparse" (a file of 1 GiB that takes no disk)
    expect: str
    to: str = ""  # a symlink's target

    @property
    def target(self) -> str:
        return "controller" if self.path == CONFIG else "rollout"


PROMPT = "rollouts/case/prompts/v2.md"

FILES: list[FileCase] = [
    FileCase(
        "prompt-fifo", PROMPT, "fifo", "spec.canary.prompt: prompt 'rollouts/case/prompts/v2.md' is not a regular file"
    ),
    FileCase("prompt-socket", PROMPT, "socket", "is not a regular file (a FIFO, socket or device)"),
    FileCase(
        "prompt-symlink-to-dev-zero", PROMPT, "symlink", "is a symlink that leads outside the repository", "/dev/zero"
    ),
    FileCase("prompt-symlink-to-a-fifo", PROMPT, "symlink", "is not a regular file", "v1.fifo"),
    FileCase("prompt-symlink-loop", PROMPT, "symlink", "cannot be read: symlink loop", "v2.md"),
    FileCase("rollout-fifo", ROLLOUT, "fifo", "rollouts/case/rollout.yaml: file is not a regular file"),
    FileCase(
        "rollout-symlink-to-dev-zero", ROLLOUT, "symlink", "rollouts/case/rollout.yaml: path leads outside", "/dev/zero"
    ),
    FileCase(
        "rollout-symlink-loop", ROLLOUT, "symlink", "rollout.yaml: file cannot be read: symlink loop", "rollout.yaml"
    ),
    FileCase("rollout-1-gib", ROLLOUT, "sparse", "rollouts/case/rollout.yaml: file is larger than 512 KiB"),
    FileCase("prompt-1-gib", PROMPT, "sparse", "prompt file 'rollouts/case/prompts/v2.md' is larger than 1024 KiB"),
    FileCase("config-fifo", CONFIG, "fifo", "rollouts/controller.yaml: file is not a regular file"),
    FileCase(
        "config-symlink-to-dev-zero", CONFIG, "symlink", "rollouts/controller.yaml: path leads outside", "/dev/zero"
    ),
]

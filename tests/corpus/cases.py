"""The bad-input corpus beyond tests/corpus/invalid: controller config, gate templates (PromQL
injection), prompt paths and contents, huge and binary files, and odd bytes in rollout specs.

Each case writes one file into a copy of tests/corpus/repo (next to a valid neighbour rollout) and
names a phrase the error must contain. Pure data; the harness is tests/corpus/test_bad_input.py.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        "cannot start any token",
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

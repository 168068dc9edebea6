"""Envoy with a prompt bundle: the applier (`controller.routers.envoy_prompts`) alone, then a prompt-only
rollout end to end on a real Envoy, rendered by `rollout render envoy`, written by the Envoy router,
with the applier proxy in front of an OpenAI-compatible stand-in that records what reached the model.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from controller import cli, errors, load, plan, repo, settings, spec, traffic
from controller.routers import atomic, base, envoy, envoy_prompts
from controller.routers import factory as router_factory
from tests.helpers import envoy_proc, net, openai_standin
from tests.helpers.openai_standin import Seen
from tests.helpers.routes import read_one

S, C = traffic.STABLE, traffic.CANARY
NAME, ROLLOUT, REV = envoy_prompts.NAME_HEADER, envoy_prompts.VARIANT_HEADER, envoy_prompts.REVISION_HEADER

BUNDLE = {
    "version": 1,
    "rollouts": {
        "bot": {
            "route": "chat",
            "roles": {S: "aaa", C: "bbb"},
            "revisions": {
                "aaa": {
                    "model": "acme/m",
                    "prompt": "p/v1.md",
                    "promptText": "Be brief.",
                    "params": {"temperature": 0},
                },
                "bbb": {"model": "acme/m", "prompt": None, "promptText": None, "params": {"top_p": 0.5}},
            },
        }
    },
}


def tagged(revision: str, rollout: str = "bot", role: str = S) -> dict[str, str]:
    return {NAME: rollout, ROLLOUT: role, REV: revision}


# -- the pure function ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        (
            tagged("aaa"),
            {"model": "client-pick", "messages": [{"role": "user", "content": "hi"}], "temperature": 1.5},
            {
                "model": "acme/m",
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
                "temperature": 0,
            },
        ),
        (
            tagged("aaa"),
            {"messages": [{"role": "system", "content": "client's own"}, {"role": "user", "content": "hi"}]},
            {
                "model": "acme/m",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "system", "content": "client's own"},
                    {"role": "user", "content": "hi"},
                ],
                "temperature": 0,
            },
        ),
        (
            tagged("bbb", role=C),
            {"messages": [{"role": "user", "content": "hi"}], "stream": True},
            {"model": "acme/m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "top_p": 0.5},
        ),
        ({}, {"messages": [{"role": "user", "content": "hi"}]}, {"messages": [{"role": "user", "content": "hi"}]}),
        (tagged("aaa"), {"input": "an embedding"}, {"input": "an embedding"}),
        (tagged("aaa"), ["not", "an", "object"], ["not", "an", "object"]),
    ],
    ids=[
        "sets-model-prompt-params",
        "client-system-kept-after",
        "no-prompt-params-only",
        "untagged",
        "not-chat",
        "not-object",
    ],
)
def test_apply(headers: dict[str, str], body: Any, expected: Any) -> None:
    variant = envoy_prompts.lookup(BUNDLE, headers)
    assert json.loads(envoy_prompts.apply(json.dumps(body).encode(), variant)) == expected


def test_apply_passes_what_is_not_json() -> None:
    variant = envoy_prompts.lookup(BUNDLE, tagged("aaa"))
    assert envoy_prompts.apply(b"\xff not json", variant) == b"\xff not json"


@pytest.mark.parametrize(
    ("bundle", "headers", "message"),
    [
        (None, tagged("aaa"), "no prompt bundle"),
        (BUNDLE, tagged("ccc"), "revision 'ccc' is not in the prompt bundle"),
        (BUNDLE, tagged("aaa", rollout="other"), "rollout 'other'"),
        (BUNDLE, {NAME: "bot"}, "revision '' is not in"),
    ],
    ids=["no-bundle", "unknown-revision", "unknown-rollout", "no-revision-tag"],
)
def test_a_tagged_request_the_bundle_cannot_serve_is_refused(
    bundle: dict[str, Any] | None, headers: dict[str, str], message: str
) -> None:
    with pytest.raises(envoy_prompts.Unserved, match=message):
        envoy_prompts.lookup(bundle, headers)


@pytest.mark.parametrize(
    "document",
    [{"version": 2, "rollouts": {}}, {"version": 1}, [], {"version": 1, "rollouts": []}],
    ids=["version", "no-rollouts", "not-object", "rollouts-not-object"],
)
def test_validate_refuses_what_is_not_a_bundle(document: Any) -> None:
    with pytest.raises(ValueError, match="bundle"):
        envoy_prompts.validate(document)


def test_the_router_writes_what_the_applier_reads() -> None:
    """One format: the entry the router writes is the variant the applier applies."""
    served = {
        S: traffic.Served("acme/m", "p/v1.md", "aaa", {"temperature": 0}, "Be brief."),
        C: traffic.Served("acme/m", "p/v2.md", "bbb", {"temperature": 0}, "Be thorough."),
    }
    document = envoy.bundle_update(None, {"bot": ("chat", served)})
    assert envoy_prompts.validate(document) == document
    for role, s in served.items():
        variant = envoy_prompts.lookup(document, tagged(s.revision, role=role))
        assert variant == envoy_prompts.Variant("bot", s.revision, s.model, s.prompt_text, s.params)
    assert document["rollouts"]["bot"]["roles"] == {S: "aaa", C: "bbb"}


def test_bundle_update_keeps_only_the_revisions_envoy_may_still_tag() -> None:
    old = {S: traffic.Served("acme/m", None, "aaa"), C: traffic.Served("acme/m", None, "bbb")}
    new = {S: traffic.Served("acme/m", None, "aaa"), C: traffic.Served("acme/m", None, "ccc")}
    other = {S: traffic.Served("acme/x", None, "xxx")}
    first = envoy.bundle_update(None, {"bot": ("chat", old), "other": ("o", other)})
    switching = envoy.bundle_update(first, {"bot": ("chat", new)}, keep={"bot": {"aaa", "bbb"}})
    assert set(switching["rollouts"]["bot"]["revisions"]) == {"aaa", "bbb", "ccc"}
    assert switching["rollouts"]["other"] == first["rollouts"]["other"]
    switched = envoy.bundle_update(switching, {"bot": ("chat", new)}, keep={"bot": {"aaa", "ccc"}})
    assert set(switched["rollouts"]["bot"]["revisions"]) == {"aaa", "ccc"}


def test_bundle_file_is_read_again_only_when_replaced(tmp_path: Path) -> None:
    path = tmp_path / "prompts.json"
    bundle = envoy_prompts.Bundle(path)
    assert bundle.get() is None and "cannot read" in bundle.problem
    atomic.replace_json(path, BUNDLE)
    first = bundle.get()
    assert first == BUNDLE and bundle.get() is first  # unchanged file: not parsed again
    path.write_text("{broken", "utf-8")
    assert bundle.get() is None and "prompts.json" in bundle.problem  # fail closed, and say why


def test_cluster_tags_round_trip() -> None:
    resource = envoy.cluster_resource("bot_canary", "127.0.0.1:8001", envoy.tags("bot", C, "bbb"))
    assert envoy.cluster_tags(resource) == {NAME: "bot", ROLLOUT: C, REV: "bbb"}
    assert envoy.cluster_hosts(resource) == {"127.0.0.1:8001"}
    assert envoy.cluster_tags(envoy.cluster_resource("bot_canary", "127.0.0.1:8001")) == {}


def test_a_bundle_needs_a_cds_file() -> None:
    with pytest.raises(errors.RouterError, match="needs a CDS file"):
        envoy.EnvoyRouter("edge", "http://127.0.0.1:1", routes={}, prompts_path=Path("/tmp/p.json"))


# -- the proxy -----------------------------------------------------------------------------------------


@pytest.fixture
def model() -> Iterator[openai_standin.Standin]:
    with openai_standin.standin("model") as server:
        yield server


def test_proxy_applies_the_variant_and_refuses_what_it_cannot_serve(
    tmp_path: Path, model: openai_standin.Standin
) -> None:
    path = tmp_path / "prompts.json"
    atomic.replace_json(path, BUNDLE)
    with envoy_prompts.running(path, f"http://{model.address}") as proxy, httpx.Client(base_url=proxy.url) as client:
        chat = {"messages": [{"role": "user", "content": "hi"}]}
        answer = client.post("/v1/chat/completions", json=chat, headers=tagged("aaa"))
        assert answer.status_code == 200 and answer.headers[REV] == "aaa"
        [seen] = model.seen()
        assert seen.path == "/v1/chat/completions" and seen.headers[ROLLOUT] == S
        assert seen.body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert client.post("/v1/chat/completions", json=chat).status_code == 200  # untagged: as sent
        assert model.seen()[-1].body == chat
        refused = client.post("/v1/chat/completions", json=chat, headers=tagged("zzz"))
        assert refused.status_code == 503 and "not in the prompt bundle" in refused.json()["error"]["message"]
        assert len(model.seen()) == 2  # the refused request never reached the model
        assert client.get("/v1/models", headers=tagged("aaa")).json()["data"][0]["id"] == "model"


class _ClosesIdle(http.server.BaseHTTPRequestHandler):
    """A model server that drops each kept-alive connection after one answer, without saying so, as an
    idle timeout does."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Streams(http.server.BaseHTTPRequestHandler):
    """A model server that streams its answer as server-sent events, chunk by chunk."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for event in (json.dumps({"system": request["messages"][0]["content"]}), "[DONE]"):
            data = f"data: {event}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A model server with `handler` on a free port, for the block: its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_proxy_reconnects_when_the_model_server_dropped_an_idle_connection(tmp_path: Path) -> None:
    path = tmp_path / "prompts.json"
    atomic.replace_json(path, BUNDLE)
    with (
        serving(_ClosesIdle) as upstream,
        envoy_prompts.running(path, upstream) as proxy,
        httpx.Client(base_url=proxy.url) as client,
    ):
        statuses = [client.post("/v1/chat/completions", json={"messages": []}).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]


def test_proxy_passes_a_stream_on(tmp_path: Path) -> None:
    path = tmp_path / "prompts.json"
    atomic.replace_json(path, BUNDLE)
    chat = {"stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with (
        serving(_Streams) as upstream,
        envoy_prompts.running(path, upstream) as proxy,
        httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=chat, headers=tagged("aaa")) as answer,
    ):
        events = [line for line in answer.iter_lines() if line]
    assert events == ['data: {"system": "Be brief."}', "data: [DONE]"]


def test_proxy_answers_502_when_the_model_server_is_down(tmp_path: Path) -> None:
    path = tmp_path / "prompts.json"
    atomic.replace_json(path, BUNDLE)
    with envoy_prompts.running(path, "http://127.0.0.1:9") as proxy:
        answer = httpx.post(f"{proxy.url}/v1/chat/completions", json={"messages": []}, headers=tagged("aaa"))
    assert answer.status_code == 502 and "did not answer" in answer.text


# -- a prompt-only rollout on a real Envoy ---------------------------------------------------------------

SPLIT = "x-test-split"
MODEL = "acme/triage-8b-2025-06-02"
PROMPTS = {"v1.md": "You triage tickets. (v1)\n", "v2.md": "You triage tickets into queues, billing included. (v2)\n"}

CONFIG = """apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  edge:
    type: envoy
    admin: http://127.0.0.1:0
    listen: 127.0.0.1:0
    cdsPath: state/envoy-clusters.json
    promptsPath: state/envoy-prompts.json
    upstreams: {{{model}: {upstream}}}
"""

ROLLOUT_YAML = """apiVersion: rollouts/v1
kind: Rollout
metadata: {{name: triage-bot}}
spec:
  router: edge
  route: triage
  stable: {{model: {model}, prompt: prompts/v1.md, params: {{temperature: 0}}}}
  canary: {{model: {model}, prompt: prompts/{canary}, params: {canary_params}}}
  steps:
    - {{shadow: 100, for: 1h}}
    - {{weight: 50, for: 1h}}
    - {{weight: 100}}
"""


@dataclass
class Stack:
    root: Path
    proxy: envoy_proc.Envoy
    model: openai_standin.Standin
    router: envoy.EnvoyRouter

    def loaded(self) -> load.LoadedRollout:
        result = load.load_repo(repo.WorkTree(self.root))
        assert not result.problems, result.problems
        found = result.rollout("triage-bot")
        assert found is not None
        return found

    def chat(self, bucket: int) -> httpx.Response:
        """One completion through Envoy, in split bucket `bucket` (0-99), saying its bucket."""
        body = {"model": "whatever", "messages": [{"role": "user", "content": f"bucket {bucket}"}]}
        return httpx.post(f"{self.proxy.url}/triage/v1/chat/completions", json=body, headers={SPLIT: str(bucket)})


def write_rollout(root: Path, *, canary: str = "v2.md", canary_params: str = "{temperature: 0}") -> None:
    text = ROLLOUT_YAML.format(model=MODEL, canary=canary, canary_params=canary_params)
    (root / "rollouts" / "triage-bot" / "rollout.yaml").write_text(text, "utf-8")


@pytest.fixture
def stack(tmp_path: Path, model: openai_standin.Standin, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A rollouts repository with a prompt-only rollout on the Envoy router `edge`, rendered by
    `rollout render envoy` (bootstrap, clusters file, prompt bundle, under the state directory
    `<repo>/`); Envoy started from it; the applier proxy in front of the recording stand-in, as the
    one upstream of the one model."""
    root = tmp_path / "repo"
    monkeypatch.setenv(settings.STATE_ENV, str(root))
    (root / "rollouts" / "triage-bot" / "prompts").mkdir(parents=True)
    for name, text in PROMPTS.items():
        (root / "rollouts" / "triage-bot" / "prompts" / name).write_text(text, "utf-8")
    write_rollout(root)
    with envoy_prompts.running(root / "state" / "envoy-prompts.json", f"http://{model.address}") as applier:
        upstream = applier.url.removeprefix("http://")
        (root / "rollouts" / "controller.yaml").write_text(CONFIG.format(model=MODEL, upstream=upstream), "utf-8")
        out = root / "envoy.yaml"
        render = ["render", "envoy", "edge", "--repo", str(root), "--out", str(out), "--split-header", SPLIT]
        assert cli.main(render) == 0
        bootstrap = YAML(typ="safe").load(out.read_text("utf-8"))
        with envoy_proc.running_envoy(bootstrap, tmp_path / "envoy") as proxy:
            config = load.load_repo(repo.WorkTree(root)).config
            assert config is not None
            edge = config.routers["edge"].model_copy(update={"admin": proxy.admin})
            router = router_factory.build("edge", edge, root=root, routes={"triage": "triage-bot"}, env={})
            assert isinstance(router, envoy.EnvoyRouter)
            yield Stack(root, proxy, model, router)
            router.close()


def by_bucket(seen: list[Seen]) -> dict[tuple[int, bool], Seen]:
    """(bucket, mirrored) -> the request the model received for it; a mirrored copy's Host ends in -shadow."""
    out = {}
    for s in seen:
        bucket = int(s.body["messages"][-1]["content"].removeprefix("bucket "))
        out[(bucket, s.headers["host"].split(":")[0].endswith("-shadow"))] = s
    return out


def served_as(seen: Seen, variant: traffic.Served) -> bool:
    body = seen.body
    return (
        body["model"] == variant.model
        and body["messages"][0] == {"role": "system", "content": variant.prompt_text}
        and all(body.get(k) == v for k, v in variant.params.items())
        and seen.headers[REV] == variant.revision
    )


@pytest.mark.slow
def test_a_prompt_only_rollout_serves_each_variant_its_prompt(stack: Stack) -> None:
    """Same model, same upstream, two prompts: shadow copies reach the model with the canary's prompt
    and live requests with the stable's; at 50% each bucket's request carries its variant's prompt."""
    loaded = stack.loaded()
    served = plan.served(loaded)
    assert served[S].prompt_text == PROMPTS["v1.md"] and served[C].prompt_text == PROMPTS["v2.md"]

    desired = plan.desired_state(loaded)  # step 0: shadow 100
    assert (desired.weight(C), desired.shadow) == (0, 100)
    base.apply(stack.router, {"triage": desired}).state("triage")
    for bucket in range(10):
        answer = stack.chat(bucket)
        assert answer.status_code == 200 and answer.headers[REV] == served[S].revision
    net.wait_for("10 live and 10 mirrored requests at the model", lambda: len(stack.model.seen()) == 20)
    seen = by_bucket(stack.model.seen())
    for bucket in range(10):
        assert served_as(seen[(bucket, False)], served[S]), seen[(bucket, False)]
        assert served_as(seen[(bucket, True)], served[C]), seen[(bucket, True)]

    half = traffic.RouteState({S: 50, C: 50}, 0, served)
    base.apply(stack.router, {"triage": half}).state("triage")
    before = len(stack.model.seen())
    for bucket in range(100):
        assert stack.chat(bucket).status_code == 200
    seen = by_bucket(stack.model.seen()[before:])
    assert len(seen) == 100
    for bucket in range(100):
        want = served[S] if bucket < 50 else served[C]
        assert served_as(seen[(bucket, False)], want), (bucket, seen[(bucket, False)])
    live = read_one(stack.router, "triage")
    assert live is not None and live.same_revisions(half)
    assert {role: s.revision for role, s in live.served.items()} == {S: served[S].revision, C: served[C].revision}


@pytest.mark.slow
def test_a_new_canary_revision_switches_without_a_restart_after_lowering_the_canary(stack: Stack) -> None:
    """The canary's prompt and params change while it takes half the traffic: the read shows the
    drift, the write first takes the canary to 0, then the bundle and the tagged clusters switch
    (no restart), and canary requests then carry the new prompt and params."""
    first = plan.served(stack.loaded())
    base.apply(stack.router, {"triage": traffic.RouteState({S: 50, C: 50}, 0, first)}).state("triage")

    (stack.root / "rollouts" / "triage-bot" / "prompts" / "v3.md").write_text("Triage, v3.\n", "utf-8")
    write_rollout(stack.root, canary="v3.md", canary_params="{temperature: 0.5}")
    second = plan.served(stack.loaded())
    assert second[C].revision != first[C].revision and second[S] == first[S]
    desired = traffic.RouteState({S: 50, C: 50}, 0, second)
    live = read_one(stack.router, "triage")
    assert live is not None and live.same_traffic(desired) and not live.same_revisions(desired)  # plan's drift

    calls: list[tuple[str, str, str]] = []
    client = httpx.Client(timeout=5, event_hooks={"request": [lambda r: calls.append(_call(r))]})
    router = envoy.EnvoyRouter(
        "edge",
        stack.proxy.admin,
        routes=stack.router.routes,
        upstreams=stack.router.upstreams,
        cds_path=stack.router.cds_path,
        prompts_path=stack.router.prompts_path,
        client=client,
    )
    pid = stack.proxy.process.pid
    base.apply(router, {"triage": desired}).state("triage")
    writes = [body for method, path, body in calls if (method, path) == ("POST", "/runtime_modify")]
    keys = {k: envoy.weight_key("rollouts", "triage-bot", k) for k in (S, C)} | {
        "shadow": envoy.shadow_key("rollouts", "triage-bot")
    }
    assert [json.loads(w) for w in writes] == [
        {keys[S]: "100", keys[C]: "0", keys["shadow"]: "0"},  # lowered before the canary changes
        {keys[S]: "50", keys[C]: "50", keys["shadow"]: "0"},  # then the step's weights
    ]
    assert stack.proxy.process.pid == pid and stack.proxy.process.poll() is None
    before = len(stack.model.seen())
    for bucket in range(40, 60):
        assert stack.chat(bucket).status_code == 200
    seen = by_bucket(stack.model.seen()[before:])
    for bucket in range(40, 60):
        want = second[S] if bucket < 50 else second[C]
        assert served_as(seen[(bucket, False)], want), (bucket, seen[(bucket, False)])
    assert seen[(55, False)].body["temperature"] == 0.5
    live = read_one(router, "triage")
    assert live is not None and live.same_revisions(desired)
    client.close()


def _call(request: httpx.Request) -> tuple[str, str, str]:
    from urllib.parse import parse_qsl

    body = dict(parse_qsl(request.read().decode())) if request.method == "POST" else {}
    return request.method, request.url.path, json.dumps(body, sort_keys=True)


@pytest.mark.slow
def test_a_lost_bundle_fails_closed_and_the_next_write_heals_it(stack: Stack) -> None:
    """Without the bundle the applier refuses tagged requests (503) instead of serving them without
    their prompt; the read shows the drift, and one write puts the bundle back."""
    desired = traffic.RouteState({S: 50, C: 50}, 0, plan.served(stack.loaded()))
    base.apply(stack.router, {"triage": desired}).state("triage")
    assert stack.router.prompts_path is not None
    stack.router.prompts_path.unlink()
    before = len(stack.model.seen())
    assert stack.chat(10).status_code == 503 and stack.chat(90).status_code == 503
    assert len(stack.model.seen()) == before
    live = read_one(stack.router, "triage")
    assert live is not None and live.same_traffic(desired) and not live.same_revisions(desired)
    base.apply(stack.router, {"triage": desired}).state("triage")
    assert stack.chat(10).status_code == 200 and stack.chat(90).status_code == 200


@pytest.mark.slow
def test_the_rendered_bootstrap_and_tagged_clusters_validate(stack: Stack, tmp_path: Path) -> None:
    """Envoy's own validation of what `rollout render envoy` wrote, the tagged clusters included (as a
    static copy: validate mode does not read the CDS file)."""
    bootstrap = YAML(typ="safe").load((stack.root / "envoy.yaml").read_text("utf-8"))
    clusters = atomic.read_json(stack.root / "state" / "envoy-clusters.json", router="edge")["resources"]
    assert all(envoy.cluster_tags(c)[REV] for c in clusters)
    del bootstrap["dynamic_resources"]
    bootstrap["static_resources"]["clusters"] = [{k: v for k, v in c.items() if k != "@type"} for c in clusters]
    path = tmp_path / "static.json"
    path.write_text(json.dumps(bootstrap), "utf-8")
    run = subprocess.run(
        [envoy_proc.ENVOY, "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_render_needs_no_envoy_and_writes_the_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    monkeypatch.setenv(settings.STATE_ENV, str(root))
    (root / "rollouts" / "triage-bot" / "prompts").mkdir(parents=True)
    for name, text in PROMPTS.items():
        (root / "rollouts" / "triage-bot" / "prompts" / name).write_text(text, "utf-8")
    write_rollout(root)
    (root / "rollouts" / "controller.yaml").write_text(CONFIG.format(model=MODEL, upstream="127.0.0.1:9"), "utf-8")
    assert cli.main(["render", "envoy", "--repo", str(root), "--out", str(root / "envoy.yaml")]) == 0
    bundle = json.loads((root / "state" / "envoy-prompts.json").read_text("utf-8"))
    loaded = load.load_repo(repo.WorkTree(root)).rollout("triage-bot")
    assert loaded is not None
    served = plan.served(loaded)
    assert bundle == envoy.bundle_update(None, {"triage-bot": ("triage", served)})
    cds = json.loads((root / "state" / "envoy-clusters.json").read_text("utf-8"))
    tags = {c["name"]: envoy.cluster_tags(c) for c in cds["resources"]}
    assert tags == {
        spec.cluster_name("triage-bot", role): envoy.tags("triage-bot", role, served[role].revision) for role in (S, C)
    }

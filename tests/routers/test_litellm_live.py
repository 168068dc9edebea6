"""Live: the session's real LiteLLM proxy in front of OpenAI-compatible stand-ins. The observed split,
a live change under load with zero failed requests, a rollback that takes the canary out of rotation,
shadow traffic through silent_model (copies to the canary, users answered by stable, off at rollback and
`rollout abort`),
LiteLLM's own metrics scraped by a real Prometheus and judged by a gate; prompt-only and params-only
rollouts reaching the model as each variant says; `rollout abort` on a group that also holds a
deployment no rollout manages; and, on a second proxy, every routing strategy LiteLLM 1.106.2 offers:
weights honoured by simple-shuffle, a raise refused and a rollout held under every other, where a
rollback still takes the canary out."""

from __future__ import annotations

import io
import math
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller import analysis, cli, errors, evidence, prometheus, spec, templates, traffic
from controller.demo import model_server
from controller.gates import Verdict
from controller.routers import base, litellm
from tests.helpers import litellm_proc, net, openai_standin, prom
from tests.helpers.live_routers import (
    GATE_ROLLOUT,
    GATE_ROUTE,
    HOTFIX,
    IGNORING,
    ROUTES,
    TOP_STRATEGY,
    LitellmStack,
    StrategyStack,
    litellm_router,
    strategy_route,
)
from tests.helpers.routes import read_one

pytestmark = pytest.mark.slow

S, C = traffic.STABLE, traffic.CANARY
ROUTE = ROUTES[1]


def split(canary: int) -> traffic.RouteState:
    return traffic.RouteState({S: 100 - canary, C: canary})


def answers(stack: LitellmStack, route: str, n: int) -> Counter[str]:
    """Who answered `n` completions on `route` (the stand-ins answer with their name)."""
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=30) as client:
        for _ in range(n):
            response = litellm_proc.completion(client, stack.proxy.url, route)
            assert response.status_code == 200, response.text
            seen[response.json()["choices"][0]["message"]["content"]] += 1
    return seen


@pytest.mark.parametrize(
    ("canary", "low", "high"), [(0, 0, 0), (25, 15, 80), (100, 200, 200)], ids=["0%", "25%", "100%"]
)
def test_observed_split(litellm_stack: LitellmStack, canary: int, low: int, high: int) -> None:
    """200 requests: exact at 0% and 100%; at 25% (mean 50, sd 6) far from 0 and from an even split."""
    base.apply(litellm_router(litellm_stack), {ROUTE: split(canary)}).state(ROUTE)
    seen = answers(litellm_stack, ROUTE, 200)
    assert sum(seen.values()) == 200
    assert low <= seen["canary"] <= high, seen


def test_live_change_under_load_drops_nothing(litellm_stack: LitellmStack) -> None:
    """Four clients send completions nonstop while the ramp 1 -> 5 -> 25 -> 50 -> 100 -> 0 is applied."""
    router = litellm_router(litellm_stack)
    base.apply(router, {ROUTE: split(0)}).state(ROUTE)
    stop = threading.Event()
    results: Counter[str] = Counter()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    response = litellm_proc.completion(http, litellm_stack.proxy.url, ROUTE)
                    outcome = (
                        response.json()["choices"][0]["message"]["content"]
                        if response.status_code == 200
                        else (f"HTTP {response.status_code}")
                    )
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    outcome = type(exc).__name__
                with lock:
                    results[outcome] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for canary in (1, 5, 25, 50, 100, 0):
            live = base.apply(router, {ROUTE: split(canary)}).state(ROUTE)
            assert live.weight(C) == canary
            # let some traffic through at this weight before the next change
            with lock:
                target = sum(results.values()) + 20
            net.wait_for("traffic at this weight", lambda n=target: sum(results.values()) >= n, deadline=60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    failures = {k: v for k, v in results.items() if k not in ("stable", "canary")}
    assert failures == {}, results
    assert results["stable"] > 0 and results["canary"] > 0


def test_rollback_takes_the_canary_out_of_rotation(litellm_stack: LitellmStack) -> None:
    router = litellm_router(litellm_stack)
    base.apply(router, {ROUTE: split(50)}).state(ROUTE)
    assert answers(litellm_stack, ROUTE, 40)["canary"] > 0
    live = base.apply(router, {ROUTE: split(0)}).state(ROUTE)
    assert (live.weight(S), live.weight(C)) == (100, 0)
    ids = {(g, i) for g, i, _w in litellm_stack.proxy.weights()}
    assert (ROUTE, spec.cluster_name("support-bot", C)) not in ids  # withdrawn, not left at weight 0
    before = litellm_stack.upstreams["canary"].requests
    assert answers(litellm_stack, ROUTE, 40) == Counter(stable=40)
    # the canary stand-in also serves the other contract route; nothing more reached it from this one
    assert litellm_stack.upstreams["canary"].requests == before


#: What each variant serves in the shadow test: the copies must reach the canary as its variant.
SHADOW_SERVED = {
    S: traffic.Served(f"openai/{ROUTE}-stable", "p/stable.md", "rev-stable", {}, "Answer as stable."),
    C: traffic.Served(f"openai/{ROUTE}-canary", "p/canary.md", "rev-canary", {}, "Answer as the canary."),
}


def deployment_count(stack: LitellmStack, metric: str, model_id: str) -> float:
    """A LiteLLM counter summed over every series of one deployment (`model_id`), from the proxy's /metrics."""
    text = httpx.get(stack.proxy.url + "/metrics/", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric and sample.labels.get("model_id") == model_id
    )


def test_shadow_mirrors_every_request_to_the_canary_while_users_get_stables_answers(
    litellm_stack: LitellmStack,
) -> None:
    """A shadow step through silent_model, on the real proxy: read back as written; every user answer is
    stable's while the canary's stand-in receives a copy of each request, with the canary's own prompt,
    and LiteLLM counts the copies under the canary's deployment id (the `model_id` the gates compare).
    A rollback's state (`lowered()`) turns the mirror off at once: no copy reaches the canary after it."""
    router = litellm_router(litellm_stack)
    stable_id, canary_id = (spec.cluster_name("support-bot", role) for role in (S, C))
    canary = litellm_stack.upstreams["canary"]
    copies = f"{ROUTE}-canary"  # the model the canary's deployment asks its upstream for
    answered = "litellm_deployment_success_responses_total"
    shadow = traffic.RouteState({S: 100, C: 0}, 100, SHADOW_SERVED)

    live = base.apply(router, {ROUTE: shadow}).state(ROUTE)
    assert live.same_traffic(shadow) and live.same_revisions(shadow)
    again = read_one(litellm_router(litellm_stack), ROUTE)
    assert again is not None and again.same_traffic(shadow)  # read back by another reader: shadow 100
    groups = {i: g for g, i, _w in litellm_stack.proxy.weights()}
    assert groups[stable_id] == ROUTE and groups[canary_id] == f"{ROUTE}:shadow"  # no user request routes to it

    before = (canary.calls(copies), deployment_count(litellm_stack, answered, canary_id))
    assert answers(litellm_stack, ROUTE, 30) == Counter(stable=30)
    net.wait_for("a copy of every request at the canary", lambda: canary.calls(copies) - before[0] == 30)
    mirrored = [seen for seen in canary.seen() if seen.model == copies][-30:]
    assert {seen.system for seen in mirrored} == {"Answer as the canary."}  # served as the canary's variant
    net.wait_for(
        "the copies counted under the canary's model_id",
        lambda: deployment_count(litellm_stack, answered, canary_id) - before[1] == 30,
    )

    down = base.apply(router, {ROUTE: live.lowered()}).state(ROUTE)
    assert (down.weight(S), down.weight(C), down.shadow) == (100, 0, 0)
    assert canary_id not in {i for _g, i, _w in litellm_stack.proxy.weights()}
    after = (canary.calls(copies), deployment_count(litellm_stack, answered, stable_id))
    assert answers(litellm_stack, ROUTE, 20) == Counter(stable=20)
    net.wait_for(
        "stable's answers counted", lambda: deployment_count(litellm_stack, answered, stable_id) - after[1] == 20
    )
    assert canary.calls(copies) == after[0]  # the mirror is off: nothing more reached the canary


def variant_requests(server: model_server.Running, route: str, variant: str) -> float:
    """`llm_requests_total` of one variant, as the demo model server exports it at /metrics."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "llm_requests_total"
        and sample.labels.get("route") == route
        and sample.labels.get("variant") == variant
    )


def test_a_rendered_shadow_step_reaches_the_canarys_model_server_under_its_own_labels(tmp_path: Path) -> None:
    """A proxy started from `model_list` as rendered for a shadow step (stable's silent_model, the canary
    in `<route>:shadow`), in front of the demo's model servers: LiteLLM takes the config, the router reads
    shadow 100 back, users are answered by stable, and the canary's server counts every copy in its own
    llm_* metrics (route, variant=canary), which the application gates compare with stable's. The
    rollback's state stops the copies."""
    missing = litellm_proc.available()
    if missing:
        pytest.skip(missing)
    route, rollout = "mirror-chat", "mirror-bot"
    servers = {
        role: model_server.start(
            model_server.Model(variant=role, route=route, model=f"{route}-{role}", behaviour=model_server.Behaviour())
        )
        for role in (S, C)
    }
    try:
        group = litellm.GroupSpec(
            rollout, route, {role: f"openai/{route}-{role}" for role in (S, C)}, {S: 100, C: 0}, shadow=100
        )
        deployments = {
            f"openai/{route}-{role}": {"api_base": server.url + "/v1", "api_key": "not-a-real-key"}
            for role, server in servers.items()
        }
        with litellm_proc.running(litellm.model_list([group], deployments=deployments), tmp_path) as proxy:
            router = litellm.LitellmRouter(
                "gateway", proxy.url, routes={route: rollout}, weights_file=proxy.weights_file,
                master_key=litellm_proc.MASTER_KEY, apply_timeout=20.0,
            )  # fmt: skip
            live = read_one(router, route)
            assert live is not None and (live.weight(S), live.weight(C), live.shadow) == (100, 0, 100)
            with httpx.Client(timeout=30) as client:
                assert litellm_proc.answered_by(client, proxy.url, route, 20) == {spec.cluster_name(rollout, S): 20}
            net.wait_for("20 copies counted by the canary", lambda: variant_requests(servers[C], route, C) == 20)
            assert variant_requests(servers[S], route, S) == 20

            down = base.apply(router, {route: live.lowered()}).state(route)
            assert down.shadow == 0
            with httpx.Client(timeout=30) as client:
                assert litellm_proc.answered_by(client, proxy.url, route, 10) == {spec.cluster_name(rollout, S): 10}
            net.wait_for("stable's answers", lambda: variant_requests(servers[S], route, S) == 30)
            assert variant_requests(servers[C], route, C) == 20
    finally:
        for server in servers.values():
            server.stop()


def test_a_completion_takes_the_old_canary_deployment_out(litellm_stack: LitellmStack) -> None:
    """After a completion the state names stable (the new one) and the old stable kept at 0; the
    weights file still names the canary deployment, at 0, so it leaves the proxy and the group stays a
    valid split (it once stayed at its weight beside stable 100, and every tick was an Error)."""
    router = litellm_router(litellm_stack)
    base.apply(router, {ROUTE: split(100)}).state(ROUTE)
    completed = traffic.RouteState({S: 100, traffic.PREVIOUS: 0})
    live = base.apply(router, {ROUTE: completed}).state(ROUTE)
    assert (live.weight(S), live.weight(C)) == (100, 0)
    assert read_one(litellm_router(litellm_stack), ROUTE) == live  # and every later read is valid
    ids = {i for g, i, _w in litellm_stack.proxy.weights() if g == ROUTE}
    assert ids == {spec.cluster_name("support-bot", S)}


def test_wrong_master_key_is_an_error_that_never_shows_the_key(litellm_stack: LitellmStack) -> None:
    from controller import errors

    secret = "sk-wrong-but-secret-123"
    router = litellm_router(litellm_stack, master_key=secret)
    with pytest.raises(errors.RouterError) as raised:
        read_one(router, ROUTE)
    assert "master key" in str(raised.value) and secret not in str(raised.value)


# -- metrics: LiteLLM's /metrics scraped by a real Prometheus, judged by a gate ----------------------


def requests_scraped(url: str) -> float:
    expr = f'sum(litellm_deployment_total_requests_total{{model_group="{GATE_ROUTE}"}})'
    result = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else -1.0


def test_gate_judges_litellm_metrics_then_rollback(litellm_stack: LitellmStack, tmp_path: Path) -> None:
    """The gated route's canary fails every request: error_rate FAILs on LiteLLM's own counters (and
    tokens_per_request holds rather than passing a canary that spends nothing), the rollback takes it
    out, and from then on every request succeeds."""
    router = litellm_router(litellm_stack)
    base.apply(router, {GATE_ROUTE: split(50)}).state(GATE_ROUTE)
    sent = 0
    with prom.prom_server(tmp_path, data_dir=tmp_path / "data") as server:
        server.set_targets([litellm_stack.proxy.url.removeprefix("http://")], metrics_path="/metrics/")
        with httpx.Client(timeout=30) as client:
            for _batch in range(3):
                for _ in range(30):
                    litellm_proc.completion(client, litellm_stack.proxy.url, GATE_ROUTE)
                    sent += 1
                prom.prom_poll(f"{sent} requests scraped", lambda n=sent: requests_scraped(server.url) >= n)
        config = spec.ControllerConfig.model_validate(
            {
                "apiVersion": "rollouts/v1",
                "kind": "ControllerConfig",
                "routers": {"gateway": {"type": "litellm", "url": litellm_stack.proxy.url}},
            }
        )
        gates = tuple(
            spec.Gate.model_validate(g)
            for g in (
                {"use": "error_rate", "max": "1%"},
                {"use": "tokens_per_request", "maxIncrease": "50%", "max": 100_000},
            )
        )
        target = analysis.Target(GATE_ROLLOUT, GATE_ROUTE, "litellm", gates, (), 5)
        metrics = prometheus.Prometheus(server.url)
        try:
            found = analysis.evaluate(
                [target], config=config, metrics=metrics, at=datetime.now(UTC), window=timedelta(minutes=5)
            )
        finally:
            metrics.close()
        bounds = httpx.get(
            f"{server.url}/api/v1/query",
            params={"query": "count by (le) (litellm_request_total_latency_metric_bucket)"},
            timeout=5,
        ).json()["data"]["result"]
    # the buckets `rollout render litellm` sets, not LiteLLM's default 1, 2, 5, 10 s: a latency gate can resolve 10%
    assert sorted(float(b["metric"]["le"]) for b in bounds) == [*templates.LATENCY_BUCKETS, math.inf]
    errors_gate, tokens_gate = found[GATE_ROLLOUT]
    print(evidence.text(GATE_ROLLOUT, found[GATE_ROLLOUT], at="now"))
    assert errors_gate.source == "litellm" and "litellm_deployment_failure_responses_total" in errors_gate.query
    assert errors_gate.verdict is Verdict.FAIL, errors_gate
    [row] = errors_gate.segments
    assert row.stable.value == 0.0 and row.canary.value is not None and row.canary.value > 0.5
    assert tokens_gate.source == "litellm"
    # tokens per answered request: stable's are real; the canary answered nothing, so it has no
    # samples and the gate holds rather than passing a canary that spends nothing
    assert "litellm_deployment_success_responses_total" in tokens_gate.query
    [row] = tokens_gate.segments
    assert row.stable.value is not None and row.stable.value >= 1, row
    assert not row.canary.samples, row
    assert tokens_gate.verdict is Verdict.INCONCLUSIVE, tokens_gate

    live = base.apply(router, {GATE_ROUTE: split(0)}).state(GATE_ROUTE)  # the rollback a FAIL triggers
    assert live.weight(C) == 0
    with httpx.Client(timeout=30) as client:
        codes = Counter(
            litellm_proc.completion(client, litellm_stack.proxy.url, GATE_ROUTE).status_code for _ in range(30)
        )
    assert codes == Counter({200: 30})


# -- end to end through the controller's commands, on a GitOps remote -------------------------------


CONFIG = """apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  gateway: {{type: litellm, url: "{url}", weightsFile: "{weights}"}}
forge: {{type: local}}
"""

ROLLOUT = """apiVersion: rollouts/v1
kind: Rollout
metadata: {{name: {name}}}
spec:
  router: gateway
  route: {route}
  stable: {stable}
  canary: {canary}
  steps:
    - {{weight: {weight}, for: 1h}}
    - {{weight: 100}}
  analysis: {{interval: 1h}}
"""


def push(remote: Path, work: Path, files: dict[str, str], message: str) -> None:
    """A human pushes to main, through a throwaway clone."""
    clone = work / f"human-{time.monotonic_ns()}"
    r = git.Repo.clone_from(str(remote), clone)
    for path, text in files.items():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_text(text, "utf-8")
    r.git.add("-A")
    who = {
        "GIT_AUTHOR_NAME": "human",
        "GIT_AUTHOR_EMAIL": "h@x",
        "GIT_COMMITTER_NAME": "human",
        "GIT_COMMITTER_EMAIL": "h@x",
    }
    r.git.commit("-m", message, env=who)
    r.git.push("origin", "HEAD:main")


def gitops(work: Path, proxy: litellm_proc.Proxy, files: dict[str, str]) -> Path:
    """A bare remote whose main holds controller.yaml (router `gateway` on `proxy`) and `files`."""
    remote = work / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    config = CONFIG.format(url=proxy.url, weights=proxy.weights_file)
    push(remote, work, {"rollouts/controller.yaml": config, **files}, "Add the rollouts")
    return remote


def rollout_cli(remote: Path, work: Path, *argv: str) -> tuple[int, str]:
    """The real CLI, as a user runs it against the remote; (exit code, what it printed). The weights
    file is absolute, so the state directory only has to be the test's own."""
    out = io.StringIO()
    code = cli.main([*argv, "--remote", str(remote), "--workdir", str(work / "controller")], out)
    return code, out.getvalue()


def seen_since(standin: openai_standin.Standin, mark: int, model: str) -> list[openai_standin.Seen]:
    """What reached `standin` for `model` (as LiteLLM sends it: without the provider prefix) after `mark`."""
    return [x for x in standin.seen()[mark:] if x.model == model]


STABLE_PROMPT = "You are the support bot. Answer in one sentence."
CANARY_PROMPT = "You are the support bot. Answer warmly, then in one sentence."
NEXT_PROMPT = "You are the support bot. Answer in one sentence and cite the FAQ."


def test_prompt_only_and_params_only_rollouts_reach_the_model_as_each_variant_says(
    litellm_stack: LitellmStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same model on both sides: the variants differ only in the system prompt (prompt-bot) or in the
    params (params-bot). `rollout reconcile` applies main; every request that reaches a deployment
    carries that variant's prompt and params, even one whose client sets its own temperature. A new
    canary prompt reaches the running proxy with the next tick (no re-render, no restart)."""
    monkeypatch.setenv("LITELLM_MASTER_KEY", litellm_proc.MASTER_KEY)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    stable, canary = litellm_stack.upstreams["stable"], litellm_stack.upstreams["canary"]
    files = {
        "rollouts/prompt-bot/rollout.yaml": ROLLOUT.format(
            name="prompt-bot",
            route="prompt-chat",
            stable="{model: openai/prompt-chat, prompt: prompts/v1.md}",
            canary="{model: openai/prompt-chat, prompt: prompts/v2.md}",
            weight=50,
        ),
        "rollouts/prompt-bot/prompts/v1.md": STABLE_PROMPT,
        "rollouts/prompt-bot/prompts/v2.md": CANARY_PROMPT,
        "rollouts/params-bot/rollout.yaml": ROLLOUT.format(
            name="params-bot",
            route="params-chat",
            stable="{model: openai/params-chat, prompt: prompts/p.md, params: {temperature: 0.2}}",
            canary="{model: openai/params-chat, prompt: prompts/p.md, params: {temperature: 0.8, max_tokens: 64}}",
            weight=50,
        ),
        "rollouts/params-bot/prompts/p.md": STABLE_PROMPT,
    }
    remote = gitops(tmp_path, litellm_stack.proxy, files)
    pid = litellm_stack.proxy.process.pid
    code, out = rollout_cli(remote, tmp_path, "reconcile", "--once")
    assert code == 0, out
    assert out.count("router gateway: set stable 50%, canary 50%, read back") == 2, out

    marks = {"stable": len(stable.seen()), "canary": len(canary.seen())}
    with httpx.Client(timeout=30) as client:
        for _ in range(40):
            assert litellm_proc.completion(client, litellm_stack.proxy.url, "prompt-chat").status_code == 200
            answer = litellm_proc.completion(client, litellm_stack.proxy.url, "params-chat", temperature=1.5)
            assert answer.status_code == 200, answer.text
    prompts = {
        name: seen_since(up, marks[name], "prompt-chat") for name, up in (("stable", stable), ("canary", canary))
    }
    assert prompts["stable"] and prompts["canary"], prompts  # both variants served at 50%
    assert {x.system for x in prompts["stable"]} == {STABLE_PROMPT}
    assert {x.system for x in prompts["canary"]} == {CANARY_PROMPT}
    params = {name: seen_since(up, marks[name], "params-chat") for name, up in (("stable", stable), ("canary", canary))}
    assert params["stable"] and params["canary"], params
    assert all(x.params.get("temperature") == 0.2 and "max_tokens" not in x.params for x in params["stable"])
    assert all(x.params.get("temperature") == 0.8 and x.params.get("max_tokens") == 64 for x in params["canary"])
    assert {x.system for x in params["stable"] + params["canary"]} == {STABLE_PROMPT}

    # The proxy says which revision each deployment serves: the next tick has nothing to apply.
    code, out = rollout_cli(remote, tmp_path, "reconcile", "--once")
    assert code == 0 and "set stable" not in out, out

    # A new canary prompt on main: a new revision, applied to the running proxy by the next tick.
    push(remote, tmp_path, {"rollouts/prompt-bot/prompts/v2.md": NEXT_PROMPT}, "prompt-bot: cite the FAQ")
    code, out = rollout_cli(remote, tmp_path, "reconcile", "--once")
    assert code == 0 and out.count("router gateway: set stable 50%, canary 50%, read back") == 1, out
    mark = len(canary.seen())
    with httpx.Client(timeout=30) as client:
        for _ in range(30):
            assert litellm_proc.completion(client, litellm_stack.proxy.url, "prompt-chat").status_code == 200
    after = seen_since(canary, mark, "prompt-chat")
    assert after and {x.system for x in after} == {NEXT_PROMPT}
    assert litellm_stack.proxy.process.pid == pid and litellm_stack.proxy.process.poll() is None


def test_abort_leaves_a_hand_added_deployment_and_takes_the_canary_out(
    litellm_stack: LitellmStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`shared-chat` also holds a deployment added by hand during an incident. `rollout abort` exits 0,
    says what it left, and from then on no request reaches the canary; the hand-added one still serves."""
    monkeypatch.setenv("LITELLM_MASTER_KEY", litellm_proc.MASTER_KEY)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    route, canary_id = "shared-chat", spec.cluster_name("shared-bot", C)
    router = litellm_router(litellm_stack)
    live = read_one(router, route)
    assert live is not None and dict(live.others) == {HOTFIX: 20}
    base.apply(router, {route: traffic.RouteState({S: 50, C: 50}, 0, others={HOTFIX: 20})}).state(route)
    with httpx.Client(timeout=30) as client:
        before = litellm_proc.answered_by(client, litellm_stack.proxy.url, route, 40)
    assert before.get(canary_id, 0) > 0, before  # the canary serves until the abort

    files = {
        "rollouts/shared-bot/rollout.yaml": ROLLOUT.format(
            name="shared-bot",
            route=route,
            stable="{model: openai/shared-chat-stable, prompt: prompts/v1.md}",
            canary="{model: openai/shared-chat-canary, prompt: prompts/v2.md}",
            weight=50,
        ),
        "rollouts/shared-bot/prompts/v1.md": STABLE_PROMPT,
        "rollouts/shared-bot/prompts/v2.md": CANARY_PROMPT,
    }
    remote = gitops(tmp_path, litellm_stack.proxy, files)
    code, out = rollout_cli(remote, tmp_path, "abort", "shared-bot", "--reason", "pager went off")
    assert code == 0, out
    assert f"router gateway: set stable 100%, canary 0%; unmanaged: {HOTFIX} (weight 20), read back" in out, out

    served_canary = len(seen_since(litellm_stack.upstreams["canary"], 0, "shared-chat-canary"))
    with httpx.Client(timeout=30) as client:
        after = litellm_proc.answered_by(client, litellm_stack.proxy.url, route, 60)
    assert canary_id not in after and after.get(HOTFIX, 0) > 0, after
    assert sum(after.values()) == 60 and set(after) == {spec.cluster_name("shared-bot", S), HOTFIX}, after
    assert len(seen_since(litellm_stack.upstreams["canary"], 0, "shared-chat-canary")) == served_canary
    assert (route, HOTFIX, 20) in litellm_stack.proxy.weights()  # left as it was


def test_reconcile_applies_a_shadow_step_and_abort_turns_the_mirror_off(
    litellm_stack: LitellmStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitOps end to end: main says a shadow step on a `litellm` router; `rollout reconcile --once` sets
    shadow 100 and reads it back, users get stable's answers while the canary gets the copies; `rollout
    abort` takes the mirror off in the same command, and no copy reaches the canary after it."""
    monkeypatch.setenv("LITELLM_MASTER_KEY", litellm_proc.MASTER_KEY)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    canary, copies = litellm_stack.upstreams["canary"], f"{ROUTE}-canary"
    text = ROLLOUT.format(
        name="support-bot",
        route=ROUTE,
        stable=f"{{model: openai/{ROUTE}-stable}}",
        canary=f"{{model: openai/{ROUTE}-canary}}",
        weight=5,
    ).replace("    - {weight: 5, for: 1h}", "    - {shadow: 100, for: 1h}\n    - {weight: 5, for: 1h}")
    remote = gitops(tmp_path, litellm_stack.proxy, {"rollouts/support-bot/rollout.yaml": text})
    code, out = rollout_cli(remote, tmp_path, "reconcile", "--once")
    assert code == 0, out
    assert "stable 100%, canary 0%, shadow 100%, read back" in out, out

    mark = len(canary.seen())
    assert answers(litellm_stack, ROUTE, 10) == Counter(stable=10)
    net.wait_for("a copy of each request at the canary", lambda: len(seen_since(canary, mark, copies)) == 10)

    code, out = rollout_cli(remote, tmp_path, "abort", "support-bot", "--reason", "the copies look wrong")
    assert code == 0, out
    assert "router gateway: set stable 100%, canary 0%, read back" in out, out
    live = read_one(litellm_router(litellm_stack), ROUTE)
    assert live is not None and live.shadow == 0
    stable_id = spec.cluster_name("support-bot", S)
    mark, counted = (
        len(canary.seen()),
        deployment_count(litellm_stack, "litellm_deployment_success_responses_total", stable_id),
    )
    assert answers(litellm_stack, ROUTE, 10) == Counter(stable=10)
    net.wait_for(
        "stable's answers counted",
        lambda: (
            deployment_count(litellm_stack, "litellm_deployment_success_responses_total", stable_id) - counted == 10
        ),
    )
    assert seen_since(canary, mark, copies) == []  # the mirror is off


# -- routing strategies: the strategies proxy ---------------------------------------------------------


@pytest.mark.parametrize("strategy", [TOP_STRATEGY, *IGNORING])
def test_a_strategy_that_ignores_weights_holds_refuses_a_raise_and_still_lowers(
    strategy_stack: StrategyStack, strategy: str
) -> None:
    route, rollout = strategy_route(strategy)
    router = strategy_stack.router(strategy)
    live = read_one(router, route)
    assert live is not None and (live.weight(S), live.weight(C)) == (90, 10)
    assert f"routing_strategy {strategy!r}, which ignores weights" in live.hold
    before = strategy_stack.proxy.weights_file.read_bytes() if strategy_stack.proxy.weights_file.exists() else None
    with pytest.raises(errors.RouterError, match=f"refusing to set stable 80%, canary 20%: .*{strategy}"):
        router.write({route: split(20)})
    after = strategy_stack.proxy.weights_file.read_bytes() if strategy_stack.proxy.weights_file.exists() else None
    assert after == before  # nothing written
    if strategy == TOP_STRATEGY:
        return  # lowered by `rollout abort` below
    lowered = base.apply(router, {route: split(0)}).state(route)
    assert (lowered.weight(S), lowered.weight(C)) == (100, 0) and lowered.hold
    assert spec.cluster_name(rollout, C) not in {i for g, i, _ in strategy_stack.proxy.weights() if g == route}
    if strategy not in ("provider-budget-routing", "lar1"):  # as a routing group these serve nothing at all
        with httpx.Client(timeout=30) as client:
            assert litellm_proc.answered_by(client, strategy_stack.proxy.url, route, 20) == {
                spec.cluster_name(rollout, S): 20
            }


def test_simple_shuffle_splits_as_the_weights_say(strategy_stack: StrategyStack) -> None:
    """The one strategy that honours weights, here through a routing group on a proxy whose own
    strategy ignores them: 200 requests at 25% (mean 50, sd 6)."""
    route, rollout = strategy_route("simple-shuffle")
    router = strategy_stack.router("simple-shuffle")
    live = base.apply(router, {route: split(25)}).state(route)
    assert live.hold == "" and live.weight(C) == 25
    with httpx.Client(timeout=30) as client:
        seen = litellm_proc.answered_by(client, strategy_stack.proxy.url, route, 200)
    assert sum(seen.values()) == 200 and 25 <= seen.get(spec.cluster_name(rollout, C), 0) <= 80, seen


def test_reconcile_holds_and_abort_lowers_under_usage_based_routing_v2(
    strategy_stack: StrategyStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LiteLLM's own example config: the controller wrote 90/10, but the proxy spreads by usage. The
    tick holds and says why; `rollout abort` still takes the canary out."""
    monkeypatch.setenv("LITELLM_MASTER_KEY", litellm_proc.MASTER_KEY)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    route, rollout = strategy_route(TOP_STRATEGY)
    canary_id = spec.cluster_name(rollout, C)
    with httpx.Client(timeout=30) as client:
        ignored = litellm_proc.answered_by(client, strategy_stack.proxy.url, route, 60)
    assert ignored.get(canary_id, 0) >= 20, ignored  # a 10% canary takes a third or more: weights ignored

    files = {
        f"rollouts/{rollout}/rollout.yaml": ROLLOUT.format(
            name=rollout,
            route=route,
            stable=f"{{model: openai/{route}-stable}}",
            canary=f"{{model: openai/{route}-canary}}",
            weight=10,
        )
    }
    remote = gitops(tmp_path, strategy_stack.proxy, files)
    code, out = rollout_cli(remote, tmp_path, "reconcile", "--once")
    assert code == 0, out
    assert "Hold" in out and f"routing_strategy {TOP_STRATEGY!r}, which ignores weights" in out, out
    assert (route, canary_id, 10) in strategy_stack.proxy.weights()  # nothing changed

    code, out = rollout_cli(remote, tmp_path, "abort", rollout, "--reason", "weights are ignored here")
    assert code == 0, out
    assert "router gateway: set stable 100%, canary 0%, read back" in out, out
    served = len(seen_since(strategy_stack.upstreams["canary"], 0, f"{route}-canary"))
    with httpx.Client(timeout=30) as client:
        after = litellm_proc.answered_by(client, strategy_stack.proxy.url, route, 40)
    assert after == {spec.cluster_name(rollout, S): 40}, after
    assert len(seen_since(strategy_stack.upstreams["canary"], 0, f"{route}-canary")) == served

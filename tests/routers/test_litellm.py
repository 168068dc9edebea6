"""The LiteLLM router's pure parts (parsing /model/info, weight checks, the rendered model_list, the
LiteLLM gate flavour) and the proxy callback applied to a real in-process `litellm.Router`."""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controller import carries, errors, spec, templates, traffic
from controller.routers import litellm
from tests.helpers import litellm_proc

S, C = traffic.STABLE, traffic.CANARY
WHERE = "router 'gateway' route 'chat'"


SHUFFLE = {"routing_strategy": "simple-shuffle"}


def row(group: str, dep_id: str, weight: Any, record: dict[str, Any] | None = SHUFFLE) -> dict[str, Any]:
    params = {"model": "openai/x"} | ({} if weight is None else {"weight": weight})
    info: dict[str, Any] = {"id": dep_id} | ({} if record is None else {"rollout": record})
    return {"model_name": group, "litellm_params": params, "model_info": info}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([row("chat", "bot_stable", 90), row("chat", "bot_canary", 10)], {S: 90, C: 10}),
        ([row("chat", "bot_stable", 100)], {S: 100, C: 0}),  # the canary is out of rotation
        ([row("chat", "bot_canary", 100)], {S: 0, C: 100}),
        ([row("chat", "bot_stable", 100), row("other", "x_stable", 7)], {S: 100, C: 0}),
        ([row("other", "x_stable", 100)], None),
        ([row("chat", "azure-eu", 100)], None),  # only a stranger: no rollout's deployment is there
        ([], None),
    ],
    ids=["split", "canary-withdrawn", "stable-withdrawn", "other-groups-ignored", "absent", "strangers-only", "empty"],
)
def test_parse_group(rows: list[dict[str, Any]], expected: dict[str, int] | None) -> None:
    state = litellm.parse_group({"data": rows}, route="chat", rollout="bot", where=WHERE)
    assert (dict(state.weights) if state else None) == expected
    assert state is None or (state.shadow == 0 and state.hold == "")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"data": [row("chat", "bot_stable", None)]}, "has weight None"),
        ({"data": [row("chat", "bot_stable", 0.5)]}, "not a whole percent"),
        ({"data": [row("chat", "bot_stable", 30), row("chat", "bot_canary", 30)]}, "sum to 100"),
        ({"models": []}, "'data' list"),
        ([], "'data' list"),
    ],
    ids=["no-weight", "fraction", "not-100", "no-data", "not-an-object"],
)
def test_parse_group_refuses_what_it_cannot_trust(data: Any, message: str) -> None:
    with pytest.raises(errors.RouterStateError, match=message) as raised:
        litellm.parse_group(data, route="chat", rollout="bot", where=WHERE)
    assert WHERE in str(raised.value)


def test_parse_group_reads_deployments_no_rollout_manages_as_others() -> None:
    """A deployment added by hand is reported with its weight in LiteLLM's units (0 when it has none:
    it takes no share beside weighted ones; a fraction rounded up), and ours need not sum to 100."""
    rows = [
        row("chat", "bot_stable", 70),
        row("chat", "bot_canary", 30),
        row("chat", "hotfix", 20, None),
        row("chat", "spare", None, None),
        row("chat", "tiny", 0.5, None),
    ]
    state = litellm.parse_group({"data": rows}, route="chat", rollout="bot", where=WHERE)
    assert state is not None
    assert dict(state.weights) == {S: 70, C: 30}
    assert dict(state.others) == {"hotfix": 20, "spare": 0, "tiny": 1}
    down = state.lowered()
    assert litellm.weights_for(down, rollout="bot", where=WHERE) == {"bot_stable": 100, "bot_canary": 0}
    partial = litellm.parse_group(
        {"data": [row("chat", "bot_stable", 80), row("chat", "hotfix", 20, None)]},
        route="chat",
        rollout="bot",
        where=WHERE,
    )
    assert partial is not None and dict(partial.weights) == {S: 80, C: 0} and dict(partial.others) == {"hotfix": 20}


def test_parse_group_reads_what_each_deployment_serves() -> None:
    record = {"revision": "r2", "params": {"temperature": 0.7}, "system_prompt": "Be brief."} | SHUFFLE
    rows = [row("chat", "bot_stable", 90, SHUFFLE), row("chat", "bot_canary", 10, record)]
    state = litellm.parse_group({"data": rows}, route="chat", rollout="bot", where=WHERE)
    assert state is not None
    assert state.served[C] == traffic.Served("openai/x", None, "r2", {"temperature": 0.7}, "Be brief.")
    # a deployment of ours that does not say what it serves serves an unknown revision: a write heals it
    assert state.served[S].revision == litellm.UNKNOWN_REVISION
    desired = traffic.RouteState({S: 90, C: 10}, 0, {S: traffic.Served("openai/x", revision="r1"), C: state.served[C]})
    assert not state.same_revisions(desired)


@pytest.mark.parametrize(
    "strategy",
    [
        "least-busy",
        "usage-based-routing",
        "usage-based-routing-v2",
        "latency-based-routing",
        "cost-based-routing",
        "provider-budget-routing",
        "lar1",
        "custom",
        None,
    ],
)
def test_a_group_whose_strategy_ignores_weights_is_read_with_a_hold(strategy: str | None) -> None:
    record = None if strategy is None else {"routing_strategy": strategy}
    rows = [row("chat", "bot_stable", 90, record), row("chat", "bot_canary", 10, record)]
    state = litellm.parse_group({"data": rows}, route="chat", rollout="bot", where=WHERE)
    assert state is not None and dict(state.weights) == {S: 90, C: 10}
    assert state.hold
    assert (repr(strategy) if strategy else "does not say which routing strategy") in state.hold
    assert state.same_traffic(traffic.RouteState({S: 90, C: 10}))  # read-back of a lowering still confirms


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (traffic.RouteState({S: 95, C: 5}), {"bot_stable": 95, "bot_canary": 5}),
        (traffic.RouteState({S: 100, C: 0}), {"bot_stable": 100, "bot_canary": 0}),
        (traffic.RouteState({S: 100}), {"bot_stable": 100, "bot_canary": 0}),  # both named, always
        (traffic.RouteState({S: 100, C: 0}, 100), {"bot_stable": 100, "bot_canary": 0}),
        (traffic.RouteState({S: 50, C: 50}, 100), {"bot_stable": 50, "bot_canary": 50}),
        (traffic.RouteState({S: 100, C: 0}, 10), "mirrors every request or none"),
        (traffic.RouteState({S: 100, C: 0}, 99), "shadow 99% cannot be applied; use shadow 100"),
        (traffic.RouteState({S: 0, C: 100}, 100), "mirrors nothing"),
        (traffic.RouteState({S: 50, C: 25, "blue": 25}), "only stable and canary"),
        (traffic.RouteState({S: 100, C: 0, traffic.PREVIOUS: 0}), {"bot_stable": 100, "bot_canary": 0}),
    ],
    ids=[
        "canary-5",
        "rollback",
        "stable-only",
        "shadow-100",
        "shadow-100-with-live-canary",
        "shadow-10-refused",
        "shadow-99-refused",
        "shadow-with-stable-at-0-refused",
        "third-variant-refused",
        "old-stable-kept-at-0",
    ],
)
def test_weights_for(state: traffic.RouteState, expected: dict[str, int] | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(errors.RouterError, match=expected):
            litellm.weights_for(state, rollout="bot", where=WHERE)
    else:
        assert litellm.weights_for(state, rollout="bot", where=WHERE) == expected


@pytest.mark.parametrize(
    ("weights", "ok"),
    [
        ({"a": 100, "b": 0}, True),
        ({"a": 0, "b": 0}, False),
        ({"a": 60, "b": 60}, False),
        ({"a": 100, "b": -1}, False),
        ({"a": 99.5, "b": 0.5}, False),
        ({"a": True, "b": 99}, False),
    ],
    ids=["ok", "all-zero", "over-100", "negative", "fractions", "bool"],
)
def test_check_weights(weights: dict[str, object], ok: bool) -> None:
    if ok:
        litellm.check_weights(weights, where=WHERE)
    else:
        with pytest.raises(errors.RouterError, match=WHERE):
            litellm.check_weights(weights, where=WHERE)


def mirroring(group: str, dep_id: str, weight: int, silent: str) -> dict[str, Any]:
    found = row(group, dep_id, weight)
    found["litellm_params"]["silent_model"] = silent
    return found


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [mirroring("chat", "bot_stable", 100, "bot_canary"), row("chat:shadow", "bot_canary", 0)],
            ({S: 100, C: 0}, 100),
        ),
        ([mirroring("chat", "bot_stable", 90, "bot_canary"), row("chat", "bot_canary", 10)], ({S: 90, C: 10}, 100)),
        ([row("chat", "bot_stable", 100), row("chat:shadow", "bot_canary", 0)], ({S: 100, C: 0}, 0)),  # no mirror
        ([mirroring("chat", "bot_stable", 100, "x_canary"), row("chat:shadow", "bot_canary", 0)], ({S: 100, C: 0}, 0)),
        (
            [row("chat", "bot_stable", 100), mirroring("chat:shadow", "bot_canary", 0, "bot_canary")],
            ({S: 100, C: 0}, 100),
        ),
    ],
    ids=["shadow", "shadow-with-live-canary", "not-mirrored", "mirrors-another", "any-of-ours-mirrors"],
)
def test_parse_group_reads_shadow(rows: list[dict[str, Any]], expected: tuple[dict[str, int], int]) -> None:
    """Shadow is a deployment of ours whose `silent_model` names our canary, the canary in the group or
    waiting in its shadow group; a write it does not show is held."""
    state = litellm.parse_group({"data": rows}, route="chat", rollout="bot", where=WHERE)
    assert state is not None and (dict(state.weights), state.shadow) == expected


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ([mirroring("chat", "bot_stable", 100, "bot_canary")], errors.RouterSplitError),
        (
            [mirroring("chat", "bot_stable", 100, "bot_canary"), row("x:shadow", "bot_canary", 0)],
            errors.RouterSplitError,
        ),
        ([mirroring("chat", "bot_stable", 90, "bot_canary"), row("chat", "hotfix", 10)], errors.RouterStateError),
    ],
    ids=["canary-absent", "canary-elsewhere", "canary-absent-with-others"],
)
def test_parse_group_never_reads_shadow_0_while_ours_mirrors_to_the_canary(
    rows: list[dict[str, Any]], error: type[errors.RouterStateError]
) -> None:
    """LiteLLM sends a copy of every request to the id stable's `silent_model` names, wherever that
    deployment is: with our canary absent from the route's groups the read is an error (healed to main's
    state, unless others share the group), never shadow 0, so a shadow-off write is not confirmed."""
    with pytest.raises(error, match="mirrors to 'bot_canary'") as raised:
        litellm.parse_group({"data": rows}, route="chat", rollout="bot", where=WHERE)
    assert (raised.type is errors.RouterSplitError) == (error is errors.RouterSplitError)


def test_entries_mark_the_mirrored_canary() -> None:
    entries = litellm.entries_for(traffic.RouteState({S: 100, C: 0}, 100), rollout="bot", where=WHERE, deployments={})
    assert entries == {"bot_stable": {"weight": 100}, "bot_canary": {"weight": 0, "mirrored": True}}
    off = litellm.entries_for(traffic.RouteState({S: 100, C: 0}), rollout="bot", where=WHERE, deployments={})
    assert off == {"bot_stable": {"weight": 100}, "bot_canary": {"weight": 0}}


def test_a_variant_or_deployment_cannot_set_silent_model() -> None:
    """Only the rollout mirrors: params or the router's deployments naming a silent_model are refused."""
    served = traffic.Served("openai/m", None, "r1", {"silent_model": "elsewhere"})
    with pytest.raises(errors.RouterError, match="silent_model"):
        litellm.serves(served, deployments={}, where=WHERE)
    group = litellm.GroupSpec("bot", "chat", {S: "openai/a", C: "openai/b"}, {S: 100, C: 0})
    with pytest.raises(errors.RouterError, match="silent_model"):
        litellm.model_list([group], deployments={"openai/a": {"silent_model": "x"}})


def test_model_list_and_weights_document_with_shadow() -> None:
    """A shadow step renders stable mirroring to the canary (its id), the canary waiting in the shadow
    group; the weights file marks the canary `mirrored`. A shadow below 100% is refused, as live."""
    group = litellm.GroupSpec("bot", "chat", {S: "openai/a", C: "openai/b"}, {S: 100, C: 0}, shadow=100)
    rendered = litellm.model_list([group], deployments={})
    assert [(d["model_name"], d["model_info"]["id"], d["litellm_params"]) for d in rendered] == [
        ("chat", "bot_stable", {"model": "openai/a", "weight": 100, "silent_model": "bot_canary"}),
        ("chat:shadow", "bot_canary", {"model": "openai/b", "weight": 0}),
    ]
    assert litellm.weights_document([group], deployments={})["groups"] == {
        "chat": {"bot_stable": {"weight": 100}, "bot_canary": {"weight": 0, "mirrored": True}}
    }
    for bad, message in (
        (dataclasses.replace(group, shadow=50), "shadow 50% cannot be applied"),
        (dataclasses.replace(group, models={S: "openai/a"}), "needs a canary"),
    ):
        with pytest.raises(errors.RouterError, match=message):
            litellm.model_list([bad], deployments={})
        with pytest.raises(errors.RouterError, match=message):
            litellm.weights_document([bad], deployments={})


def test_model_list_and_weights_document() -> None:
    groups = [
        litellm.GroupSpec("support-bot", "support-chat", {S: "openai/a-2024", C: "openai/b-2025"}, {S: 95, C: 5}),
        litellm.GroupSpec("triage", "triage", {S: "openai/a-2024"}, {S: 100}),
    ]
    extra = {"openai/a-2024": {"api_base": "http://127.0.0.1:1/v1", "api_key": "os.environ/OPENAI_API_KEY"}}
    rendered = litellm.model_list(groups, deployments=extra)
    assert rendered == [
        {
            "model_name": "support-chat",
            "litellm_params": {
                "model": "openai/a-2024",
                "api_base": "http://127.0.0.1:1/v1",
                "api_key": "os.environ/OPENAI_API_KEY",
                "weight": 95,
            },
            "model_info": {"id": "support-bot_stable", "rollout": {}},
        },
        {
            "model_name": "support-chat",
            "litellm_params": {"model": "openai/b-2025", "weight": 5},
            "model_info": {"id": "support-bot_canary", "rollout": {}},
        },
        {
            "model_name": "triage",
            "litellm_params": {**rendered[0]["litellm_params"], "weight": 100},
            "model_info": {"id": "triage_stable", "rollout": {}},
        },
    ]
    assert litellm.weights_document(groups, deployments=extra) == {
        "version": litellm.FORMAT_VERSION,
        "groups": {
            "support-chat": {"support-bot_stable": {"weight": 95}, "support-bot_canary": {"weight": 5}},
            "triage": {"triage_stable": {"weight": 100}},
        },
    }


PROMPTED = {
    S: traffic.Served("openai/m", "p/v1.md", "rev-s", {"temperature": 0.2}, "You are terse."),
    C: traffic.Served("openai/m", "p/v2.md", "rev-c", {"temperature": 0.9}, "You are warm."),
}


def test_variants_that_differ_only_in_prompt_and_params_render_different_deployments() -> None:
    """A prompt-only or params-only rollout is no A/A test: each deployment carries its variant."""
    group = litellm.GroupSpec("bot", "chat", {S: "openai/m", C: "openai/m"}, {S: 90, C: 10}, PROMPTED)
    stable, canary = litellm.model_list([group], deployments={"openai/m": {"api_key": "os.environ/K"}})
    assert stable["litellm_params"] == {
        "model": "openai/m",
        "api_key": "os.environ/K",
        "temperature": 0.2,
        "weight": 90,
    }
    assert canary["litellm_params"]["temperature"] == 0.9
    assert stable["model_info"]["rollout"] == {
        "revision": "rev-s",
        "params": {"temperature": 0.2},
        "system_prompt": "You are terse.",
    }
    assert canary["model_info"]["rollout"]["system_prompt"] == "You are warm."
    document = litellm.weights_document([group], deployments={"openai/m": {"api_key": "os.environ/K"}})
    assert document["groups"]["chat"]["bot_canary"] == {
        "weight": 10,
        "serves": {
            "model": "openai/m",
            "revision": "rev-c",
            "params": {"temperature": 0.9},
            "system_prompt": "You are warm.",
            "litellm_params": {"api_key": "os.environ/K"},
        },
    }


@pytest.mark.parametrize(
    ("served", "deployments", "message"),
    [
        (traffic.Served("openai/m", "p/v1.md", "r"), {}, "text of prompt 'p/v1.md' is unknown"),
        (traffic.Served("openai/m", None, "r", {"weight": 3}), {}, r"params sets \['weight'\]"),
        (traffic.Served("openai/m", None, "r"), {"openai/m": {"model": "x"}}, r"sets \['model'\]"),
    ],
    ids=["prompt-without-text", "params-set-weight", "deployments-set-model"],
)
def test_entries_refuse_what_would_serve_another_variant(
    served: traffic.Served, deployments: dict[str, Any], message: str
) -> None:
    state = traffic.RouteState({S: 100, C: 0}, 0, {S: served})
    with pytest.raises(errors.RouterError, match=message):
        litellm.entries_for(state, rollout="bot", where=WHERE, deployments=deployments)


@pytest.mark.parametrize(
    ("config", "routes", "problem"),
    [
        ({"model_list": []}, ["chat"], None),
        ({"router_settings": {"routing_strategy": "simple-shuffle"}}, ["chat"], None),
        (
            {"router_settings": {"routing_strategy": "usage-based-routing-v2"}},
            ["chat"],
            "routing_strategy: usage-based",
        ),
        ({"router_settings": {"routing_strategy": "least-busy"}}, [], None),  # no rollout on this proxy
        (
            {
                "router_settings": {
                    "routing_groups": [
                        {"group_name": "g", "models": ["chat"], "routing_strategy": "latency-based-routing"}
                    ]
                }
            },
            ["chat"],
            "routing_groups.0.routing_strategy: latency-based-routing",
        ),
        (
            {
                "router_settings": {
                    "routing_strategy": "least-busy",
                    "routing_groups": [{"group_name": "g", "models": ["chat"], "routing_strategy": "simple-shuffle"}],
                }
            },
            ["chat"],
            None,
        ),
        (
            {
                "router_settings": {
                    "routing_groups": [
                        {
                            "group_name": "g",
                            "models": ["chat"],
                            "routing_strategy": "priority",
                            "model_priorities": {"chat": 1},
                        }
                    ]
                }
            },
            ["chat"],
            None,
        ),
    ],
    ids=[
        "default",
        "simple-shuffle",
        "usage-v2",
        "no-route",
        "routing-group",
        "group-shuffle-over-top",
        "priority-group",
    ],
)
def test_strategy_problem(config: dict[str, Any], routes: list[str], problem: str | None) -> None:
    found = carries.strategy_problem(config, routes=routes)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found[1] and "'chat'" in found[1]


@pytest.mark.parametrize(
    ("gate", "metric"),
    [
        ("error_rate", "litellm_deployment_failure_responses_total"),
        ("latency_p95", "litellm_request_total_latency_metric_bucket"),
        ("cost_per_request", "litellm_spend_metric_total"),
        ("tokens_per_request", "litellm_total_tokens_metric_total"),
    ],
    ids=["errors", "latency", "cost", "tokens"],
)
def test_litellm_gate_flavour(gate: str, metric: str) -> None:
    template = templates.BUILTIN[gate]
    flavour = template.flavour_for("litellm")
    assert flavour is templates.Flavour.LITELLM
    g = templates.group(flavour, ["tenant_tier"], subjects=["support-bot"])
    assert g.segments == () and g.subject_label == "rollout"
    query = templates.compile_query(template, [g], window=timedelta(minutes=5))
    assert metric in query
    assert '{model_id=~"(?:support-bot)_(?:stable|canary)"}' in query
    assert "label_replace(" in query and '"model_id"' in query
    assert "envoy_cluster_name" not in query and "route=~" not in query
    if gate.endswith("_per_request"):  # per answered request: failed requests spend nothing
        assert "litellm_deployment_success_responses_total" in query
        assert "litellm_deployment_total_requests_total" in query  # every request: the answered share


def test_eval_gates_keep_the_application_flavour() -> None:
    assert templates.BUILTIN["eval_pass_rate"].flavour_for("litellm") is templates.Flavour.APP


# -- the proxy callback, on a real in-process litellm.Router -------------------------------------------


@pytest.fixture
def router() -> Any:
    missing = litellm_proc.available()
    if missing:
        pytest.skip(missing)
    from litellm import Router

    def dep(group: str, dep_id: str, weight: int) -> dict[str, Any]:
        params = {"model": f"openai/{dep_id}", "api_base": "http://127.0.0.1:9/v1", "api_key": "x", "weight": weight}
        return {"model_name": group, "litellm_params": params, "model_info": {"id": dep_id}}

    return Router(model_list=[dep("chat", "bot_stable", 100), dep("chat", "bot_canary", 0), dep("other", "o_1", 1)])


def live(router: Any) -> dict[str, int]:
    return {d["model_info"]["id"]: d["litellm_params"].get("weight") for d in router.model_list}


def test_callback_applies_weights_and_withdraws_zero(router: Any) -> None:
    from controller.routers import litellm_callback

    withdrawn: dict[str, dict[str, Any]] = {}
    assert litellm_callback.apply_groups(router, {"chat": {"bot_stable": 95, "bot_canary": 5}}, withdrawn) == []
    assert live(router) == {"bot_stable": 95, "bot_canary": 5, "o_1": 1}
    # rollback: the canary leaves the model list (not weight 0: LiteLLM splits evenly over all-0)
    assert litellm_callback.apply_groups(router, {"chat": {"bot_stable": 100, "bot_canary": 0}}, withdrawn) == []
    assert live(router) == {"bot_stable": 100, "o_1": 1}
    assert set(withdrawn) == {"bot_canary"}
    # and comes back with its own params when its weight rises again
    assert litellm_callback.apply_groups(router, {"chat": {"bot_stable": 50, "bot_canary": 50}}, withdrawn) == []
    assert live(router) == {"bot_stable": 50, "bot_canary": 50, "o_1": 1}
    assert router.get_deployment(model_id="bot_canary").litellm_params.model == "openai/bot_canary"
    assert withdrawn == {}


@pytest.mark.parametrize(
    ("groups", "problem"),
    [
        ({"chat": {"bot_stable": 0, "bot_canary": 0}}, "every weight is 0"),
        ({"chat": {"bot_stable": 50, "nobody": 50}}, "unknown deployments ['nobody']"),
        ({"chat": {"bot_stable": 50, "o_1": 50}}, "another group ['o_1']"),
        ({"chat": {"bot_stable": "50"}}, "whole numbers"),
    ],
    ids=["all-zero", "unknown", "other-group", "not-a-number"],
)
def test_callback_skips_a_bad_group_whole(router: Any, groups: dict[str, Any], problem: str) -> None:
    from controller.routers import litellm_callback

    before = live(router)
    problems = litellm_callback.apply_groups(router, groups, {})
    assert len(problems) == 1 and problem in problems[0]
    assert live(router) == before


def test_controller_config_accepts_a_litellm_router() -> None:
    config = spec.LitellmRouterConfig.model_validate(
        {"type": "litellm", "url": "http://127.0.0.1:4000/", "weightsFile": "/srv/w.json", "applyTimeout": "5s"}
    )
    assert (config.url, config.weights_file, config.apply_timeout) == (
        "http://127.0.0.1:4000",
        "/srv/w.json",
        timedelta(seconds=5),
    )


def test_watcher_applies_a_changed_file_and_heals_drift(router: Any, tmp_path: Path) -> None:
    from controller.routers import litellm_callback

    path = tmp_path / "weights.json"
    watcher = litellm_callback.WeightsWatcher(str(path), heal_every=0.0)  # no running loop: no task
    assert watcher.tick(router) is False  # no file yet: nothing to apply
    path.write_text(json.dumps({"version": 1, "groups": {"chat": {"bot_stable": 75, "bot_canary": 25}}}))
    assert watcher.tick(router) is True
    assert live(router) == {"bot_stable": 75, "bot_canary": 25, "o_1": 1}
    # someone changes the proxy's model list by hand; the unchanged file is applied again
    from litellm.types.router import Deployment

    by_hand = copy.deepcopy(router.model_list[router.model_id_to_deployment_index_map["bot_canary"]])
    by_hand["litellm_params"]["weight"] = 90
    router.upsert_deployment(Deployment(**by_hand))
    assert live(router)["bot_canary"] == 90
    assert watcher.tick(router) is True
    assert live(router) == {"bot_stable": 75, "bot_canary": 25, "o_1": 1}


def test_watcher_ignores_a_malformed_file(router: Any, tmp_path: Path) -> None:
    from controller.routers import litellm_callback

    path = tmp_path / "weights.json"
    path.write_text('{"groups": {"chat": {"bot_stable": 0}}}')  # no version
    watcher = litellm_callback.WeightsWatcher(str(path))
    before = live(router)
    assert watcher.tick(router) is False
    assert live(router) == before


# -- what each variant serves, routing strategies, deployments no rollout manages (in-process Router) ---


def deployment(group: str, dep_id: str, weight: int, *, ours: bool = True, **params: Any) -> dict[str, Any]:
    litellm_params = {
        "model": f"openai/{dep_id}",
        "api_base": "http://127.0.0.1:9/v1",
        "api_key": "x",
        "weight": weight,
    }
    info: dict[str, Any] = {"id": dep_id} | ({"rollout": {}} if ours else {})
    return {"model_name": group, "litellm_params": litellm_params | params, "model_info": info}


def new_router(*deployments: dict[str, Any], **settings: Any) -> Any:
    missing = litellm_proc.available()
    if missing:
        pytest.skip(missing)
    from litellm import Router

    return Router(model_list=[copy.deepcopy(d) for d in deployments], **settings)


def raw(router: Any, dep_id: str) -> dict[str, Any]:
    found: dict[str, Any] = router.model_list[router.model_id_to_deployment_index_map[dep_id]]
    return found


def model_info(router: Any) -> dict[str, Any]:
    """What `GET /model/info` answers the master key for this router's model list (all of it)."""
    return {"data": copy.deepcopy(router.model_list)}


def serving(model: str, revision: str, *, prompt: str | None = None, **params: Any) -> dict[str, Any]:
    return {"model": model, "revision": revision, "params": params, "system_prompt": prompt, "litellm_params": {}}


def test_callback_gives_each_deployment_what_its_variant_serves() -> None:
    from controller.routers import litellm_callback

    router = new_router(deployment("chat", "bot_stable", 100), deployment("chat", "bot_canary", 0))
    withdrawn: dict[str, dict[str, Any]] = {}
    groups = {
        "chat": {
            "bot_stable": {"weight": 50, "serves": serving("openai/m", "r1", prompt="Be terse.", temperature=0.2)},
            "bot_canary": {"weight": 50, "serves": serving("openai/m", "r2", prompt="Be warm.", temperature=0.9)},
        }
    }
    assert litellm_callback.apply_groups(router, groups, withdrawn) == []
    canary = raw(router, "bot_canary")
    assert canary["litellm_params"]["model"] == "openai/m" and canary["litellm_params"]["temperature"] == 0.9
    assert canary["litellm_params"]["api_base"] == "http://127.0.0.1:9/v1"  # its connection params stay
    assert canary["model_info"]["rollout"] == {
        "revision": "r2",
        "params": {"temperature": 0.9},
        "system_prompt": "Be warm.",
        "routing_strategy": "simple-shuffle",
    }
    # a new canary revision: other params (the old one's are removed), another prompt, no restart
    groups["chat"]["bot_canary"] = {"weight": 50, "serves": serving("openai/m", "r3", prompt="Be kind.", max_tokens=9)}
    assert litellm_callback.apply_groups(router, groups, withdrawn) == []
    canary = raw(router, "bot_canary")
    assert "temperature" not in canary["litellm_params"] and canary["litellm_params"]["max_tokens"] == 9
    assert canary["model_info"]["rollout"]["revision"] == "r3"
    assert raw(router, "bot_stable")["model_info"]["rollout"]["revision"] == "r1"
    # withdrawn, it keeps what it serves; a weight-only entry (version 1) brings it back as it was
    groups["chat"] = {"bot_stable": {"weight": 100, "serves": groups["chat"]["bot_stable"]["serves"]}, "bot_canary": 0}
    assert litellm_callback.apply_groups(router, groups, withdrawn) == []
    assert "bot_canary" not in router.model_id_to_deployment_index_map
    assert litellm_callback.apply_groups(router, {"chat": {"bot_stable": 70, "bot_canary": 30}}, withdrawn) == []
    canary = raw(router, "bot_canary")
    assert canary["litellm_params"]["weight"] == 30 and canary["model_info"]["rollout"]["revision"] == "r3"


def test_callback_leaves_a_group_litellm_would_refuse_but_still_takes_the_canary_out() -> None:
    from controller.routers import litellm_callback

    router = new_router(deployment("chat", "bot_stable", 50), deployment("chat", "bot_canary", 50))
    before = copy.deepcopy(router.model_list)
    bad = {"weight": 100, "serves": serving("nosuchprovider/m", "r9")}  # LiteLLM would drop it on upsert
    problems = litellm_callback.apply_groups(router, {"chat": {"bot_stable": bad, "bot_canary": {"weight": 0}}}, {})
    assert len(problems) == 1 and "bot_stable" in problems[0] and "only its removals" in problems[0]
    assert [d["model_info"]["id"] for d in router.model_list] == ["bot_stable"]  # the canary is out regardless
    assert raw(router, "bot_stable") == before[0]  # and stable is as it was
    # raising the canary with a refused deployment changes nothing at all
    router = new_router(deployment("chat", "bot_stable", 100), deployment("chat", "bot_canary", 0))
    before = copy.deepcopy(router.model_list)
    problems = litellm_callback.apply_groups(
        router,
        {
            "chat": {
                "bot_stable": {"weight": 50},
                "bot_canary": {"weight": 50, "serves": serving("nosuchprovider/m", "r9")},
            }
        },
        {},
    )
    assert len(problems) == 1 and router.model_list == before


def test_callback_never_touches_a_deployment_no_rollout_manages() -> None:
    from controller.routers import litellm_callback

    hotfix = deployment("chat", "hotfix", 20, ours=False)
    router = new_router(deployment("chat", "bot_stable", 50), deployment("chat", "bot_canary", 50), hotfix)
    groups = {"chat": {"bot_stable": {"weight": 100, "serves": serving("openai/m", "r1")}, "bot_canary": {"weight": 0}}}
    assert litellm_callback.apply_groups(router, groups, {}) == []
    assert litellm_callback.stamp(router) == 0  # applying stamped ours already
    assert sorted(d["model_info"]["id"] for d in router.model_list) == ["bot_stable", "hotfix"]
    assert raw(router, "hotfix") == new_router(hotfix).model_list[0]  # weight, model and model_info as they were


def test_callback_builds_a_canary_the_proxy_lacks_from_a_sibling() -> None:
    """The scaffold's proxy starts with stable only: the first canary needs no re-render, no restart."""
    from controller.routers import litellm_callback

    stable = deployment("chat", "bot_stable", 100, temperature=0.2, timeout=30)
    stable["model_info"] |= {"rollout": {"revision": "r1", "params": {"temperature": 0.2}}, "base_model": "m"}
    router = new_router(stable, deployment("other", "o_1", 1))
    canary = serving("openai/m2", "r2", prompt="Be warm.", max_tokens=9) | {"litellm_params": {"api_key": "k2"}}
    groups = {"chat": {"bot_stable": {"weight": 80}, "bot_canary": {"weight": 20, "serves": canary}}}
    assert litellm_callback.apply_groups(router, groups, {}) == []
    built = raw(router, "bot_canary")
    assert built["model_name"] == "chat" and built["litellm_params"]["weight"] == 20
    assert built["litellm_params"]["model"] == "openai/m2" and built["litellm_params"]["max_tokens"] == 9
    assert built["litellm_params"]["api_key"] == "k2"  # the file's connection params for its model
    assert built["litellm_params"]["timeout"] == 30  # the rest as the sibling has it
    assert "temperature" not in built["litellm_params"]  # the sibling's variant params are not the canary's
    assert "base_model" not in built["model_info"]  # nor what describes the sibling's model
    assert built["model_info"]["rollout"]["revision"] == "r2"
    assert raw(router, "bot_stable")["litellm_params"]["weight"] == 80
    # without what it serves, or without a deployment of ours to build from, it stays refused
    hotfix = deployment("chat", "hotfix", 80, ours=False)
    for router, group in (
        (new_router(stable), {"bot_stable": 80, "bot_x": 20}),
        (new_router(hotfix), {"hotfix": 80, "bot_x": {"weight": 20, "serves": canary}}),
    ):
        [problem] = litellm_callback.apply_groups(router, {"chat": group}, {})
        assert "unknown deployments ['bot_x']" in problem


def test_callback_mirrors_stable_to_the_canary_and_stops_at_once() -> None:
    """Shadow on: the canary (weight 0) waits in the shadow group, where no user request is routed,
    and stable's silent_model names it; off: silent_model goes and the canary is withdrawn; on again:
    the withdrawn canary comes back with what it served. A canary the proxy lacks is built."""
    from controller.routers import litellm_callback

    router = new_router(deployment("chat", "bot_stable", 100), deployment("chat", "bot_canary", 0))
    withdrawn: dict[str, dict[str, Any]] = {}
    mirrored = {"chat": {"bot_stable": {"weight": 100}, "bot_canary": {"weight": 0, "mirrored": True}}}

    def where() -> dict[str, tuple[str, int, Any]]:
        return {
            d["model_info"]["id"]: (
                d["model_name"],
                d["litellm_params"]["weight"],
                d["litellm_params"].get("silent_model"),
            )
            for d in router.model_list
        }

    for _ in range(2):
        assert litellm_callback.apply_groups(router, mirrored, withdrawn) == []
        assert where() == {"bot_stable": ("chat", 100, "bot_canary"), "bot_canary": ("chat:shadow", 0, None)}
        assert [d["model_info"]["id"] for d in router.get_model_list(model_name="chat")] == ["bot_stable"]
        assert withdrawn == {}
        off = {"chat": {"bot_stable": {"weight": 100}, "bot_canary": {"weight": 0}}}
        assert litellm_callback.apply_groups(router, off, withdrawn) == []
        assert where() == {"bot_stable": ("chat", 100, None)}
        assert withdrawn["bot_canary"]["model_name"] == "chat"  # back in its group when its weight rises
    # with a live canary, it stays in the group and stable still mirrors to it
    live_canary = {"chat": {"bot_stable": {"weight": 90}, "bot_canary": {"weight": 10, "mirrored": True}}}
    assert litellm_callback.apply_groups(router, live_canary, withdrawn) == []
    assert where() == {"bot_stable": ("chat", 90, "bot_canary"), "bot_canary": ("chat", 10, None)}
    # a file that no longer names the waiting canary (a stale one, after a completion) takes it out
    assert litellm_callback.apply_groups(router, mirrored, withdrawn) == []
    assert litellm_callback.apply_groups(router, {"chat": {"bot_stable": {"weight": 100}}}, withdrawn) == []
    assert where() == {"bot_stable": ("chat", 100, None)}
    # a canary the proxy never had is built from stable, without stable's silent_model
    router = new_router(deployment("chat", "bot_stable", 100, silent_model="stale"))
    built = {
        "chat": {
            "bot_stable": {"weight": 100},
            "bot_canary": {"weight": 0, "mirrored": True, "serves": serving("openai/m2", "r2")},
        }
    }
    assert litellm_callback.apply_groups(router, built, {}) == []
    assert where() == {"bot_stable": ("chat", 100, "bot_canary"), "bot_canary": ("chat:shadow", 0, None)}
    assert raw(router, "bot_canary")["litellm_params"]["model"] == "openai/m2"


def test_callback_stops_a_mirror_even_when_it_cannot_build_the_group() -> None:
    """Shadow off with stable's entry one the callback cannot build (its api_key names an unset
    variable): the group is left as it is except what lowers exposure: stable's silent_model goes
    (before the canary does), the canary is withdrawn, and the read says shadow 0 only then."""
    from controller.routers import litellm_callback

    router = new_router(deployment("chat", "bot_stable", 100), deployment("chat", "bot_canary", 0))
    withdrawn: dict[str, dict[str, Any]] = {}
    mirrored = {"chat": {"bot_stable": {"weight": 100}, "bot_canary": {"weight": 0, "mirrored": True}}}
    assert litellm_callback.apply_groups(router, mirrored, withdrawn) == []
    assert raw(router, "bot_stable")["litellm_params"]["silent_model"] == "bot_canary"
    unbuildable = serving("openai/m", "r2") | {"litellm_params": {"api_key": "os.environ/ROLLOUT_TEST_UNSET_KEY"}}
    assert "ROLLOUT_TEST_UNSET_KEY" not in os.environ
    off = {"chat": {"bot_stable": {"weight": 100, "serves": unbuildable}, "bot_canary": {"weight": 0}}}
    [problem] = litellm_callback.apply_groups(router, off, withdrawn)
    assert "cannot build" in problem and "bot_stable" in problem
    stable = raw(router, "bot_stable")
    assert "silent_model" not in stable["litellm_params"]
    assert stable["litellm_params"]["model"] == "openai/bot_stable"  # the rest of stable as it was
    assert [d["model_info"]["id"] for d in router.model_list] == ["bot_stable"]
    assert withdrawn["bot_canary"]["model_info"]["id"] == "bot_canary"
    state = litellm.parse_group(model_info(router), route="chat", rollout="bot", where=WHERE)
    assert state is not None and state.shadow == 0
    # a mirror the file keeps is kept: only what lowers exposure is applied on the refused path
    router = new_router(
        deployment("chat", "bot_stable", 100, silent_model="bot_canary"), deployment("chat:shadow", "bot_canary", 0)
    )
    on = {"chat": {"bot_stable": off["chat"]["bot_stable"], "bot_canary": {"weight": 0, "mirrored": True}}}
    [problem] = litellm_callback.apply_groups(router, on, {})
    assert "cannot build" in problem and raw(router, "bot_stable")["litellm_params"]["silent_model"] == "bot_canary"


def test_a_rendered_canary_at_0_waits_outside_the_routes_group_until_the_callback_withdraws_it() -> None:
    """`rollout render litellm` puts a canary at weight 0 in the shadow group, shadow or not: in the
    route's group LiteLLM would give it users' requests while stable cooled down, from the proxy's start
    until the callback's first run. The read agrees (canary 0, no shadow); the callback withdraws it,
    and puts it back in the route's group when its weight rises."""
    from controller.routers import litellm_callback

    extra = {m: {"api_base": "http://127.0.0.1:9/v1", "api_key": "x"} for m in ("openai/a", "openai/b")}
    group = litellm.GroupSpec("bot", "chat", {S: "openai/a", C: "openai/b"}, {S: 100, C: 0}, PROMPTED)
    rendered = litellm.model_list([group], deployments=extra)
    assert [(d["model_name"], d["model_info"]["id"]) for d in rendered] == [
        ("chat", "bot_stable"),
        ("chat:shadow", "bot_canary"),
    ]
    assert "silent_model" not in rendered[0]["litellm_params"]
    router = new_router(*rendered)
    assert [d["model_info"]["id"] for d in router.get_model_list(model_name="chat")] == ["bot_stable"]
    state = litellm.parse_group(model_info(router), route="chat", rollout="bot", where=WHERE)
    assert state is not None and (dict(state.weights), state.shadow) == ({S: 100, C: 0}, 0)
    assert state.served[C].revision == "rev-c"
    withdrawn: dict[str, dict[str, Any]] = {}
    document = litellm.weights_document([group], deployments=extra)
    assert litellm_callback.apply_groups(router, document["groups"], withdrawn) == []
    assert [d["model_info"]["id"] for d in router.model_list] == ["bot_stable"]
    raised = dataclasses.replace(group, weights={S: 90, C: 10})
    assert (
        litellm_callback.apply_groups(
            router, litellm.weights_document([raised], deployments=extra)["groups"], withdrawn
        )
        == []
    )
    canary = raw(router, "bot_canary")
    assert (canary["model_name"], canary["litellm_params"]["weight"]) == ("chat", 10)
    # stable at 0 (the canary at 100) stays in the route's group: that is no exposure
    done = litellm.model_list([dataclasses.replace(group, weights={S: 0, C: 100})], deployments=extra)
    assert [(d["model_name"], d["model_info"]["id"]) for d in done] == [("chat", "bot_stable"), ("chat", "bot_canary")]


def test_a_waiting_canary_is_kept_out_of_v1_models() -> None:
    """A canary waiting in the shadow group carries `model_info.discoverable: false`, rendered and set
    live, so LiteLLM's own filter keeps `<route>:shadow` out of `/v1/models` for a key without admin
    view; rising into the route's group or withdrawn, it loses it. (A call to it is not refused.)"""
    from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth
    from litellm.proxy.common_utils.discoverable_model_filter import undiscoverable_model_names

    from controller.routers import litellm_callback

    extra = {m: {"api_base": "http://127.0.0.1:9/v1", "api_key": "x"} for m in ("openai/a", "openai/b")}
    group = litellm.GroupSpec("bot", "chat", {S: "openai/a", C: "openai/b"}, {S: 100, C: 0}, shadow=100)
    rendered = litellm.model_list([group], deployments=extra)
    assert [d["model_info"].get("discoverable") for d in rendered] == [None, False]
    user, admin = UserAPIKeyAuth(api_key="sk-user"), UserAPIKeyAuth(user_role=LitellmUserRoles.PROXY_ADMIN)

    def hidden(router: Any, key: Any = user) -> set[str]:
        return set(undiscoverable_model_names(["chat", "chat:shadow"], router, key, None))

    router = new_router(*rendered)
    assert hidden(router) == {"chat:shadow"} and hidden(router, admin) == set()
    # live: a canary the callback moves into the shadow group is hidden; out of it, listed again
    router = new_router(deployment("chat", "bot_stable", 100), deployment("chat", "bot_canary", 0))
    withdrawn: dict[str, dict[str, Any]] = {}
    mirrored = {"chat": {"bot_stable": {"weight": 100}, "bot_canary": {"weight": 0, "mirrored": True}}}
    assert litellm_callback.apply_groups(router, mirrored, withdrawn) == []
    assert raw(router, "bot_canary")["model_info"]["discoverable"] is False and hidden(router) == {"chat:shadow"}
    assert "discoverable" not in raw(router, "bot_stable")["model_info"]
    live_canary = {"chat": {"bot_stable": {"weight": 90}, "bot_canary": {"weight": 10, "mirrored": True}}}
    assert litellm_callback.apply_groups(router, live_canary, withdrawn) == []
    assert "discoverable" not in raw(router, "bot_canary")["model_info"] and hidden(router) == set()
    assert litellm_callback.apply_groups(router, mirrored, withdrawn) == []
    off = {"chat": {"bot_stable": {"weight": 100}, "bot_canary": {"weight": 0}}}
    assert litellm_callback.apply_groups(router, off, withdrawn) == []
    assert "discoverable" not in withdrawn["bot_canary"]["model_info"]  # back in the route's group, listed
    # a discoverable: false that is not ours (set on stable by hand) is left as it is
    router = new_router(
        deployment("chat", "bot_stable", 100)
        | {"model_info": {"id": "bot_stable", "rollout": {}, "discoverable": False}}
    )
    assert litellm_callback.apply_groups(router, {"chat": {"bot_stable": {"weight": 100}}}, {}) == []
    assert raw(router, "bot_stable")["model_info"]["discoverable"] is False


@pytest.mark.parametrize(
    ("group", "problem"),
    [
        (
            {"bot_stable": {"weight": 100}, "bot_canary": {"weight": 0, "mirrored": "yes"}},
            "'mirrored' must be true or false",
        ),
        (
            {"bot_stable": {"weight": 90, "mirrored": True}, "bot_canary": {"weight": 10, "mirrored": True}},
            "more than one deployment is mirrored",
        ),
    ],
    ids=["not-a-bool", "two-mirrored"],
)
def test_callback_refuses_a_mirror_it_cannot_read(group: dict[str, Any], problem: str) -> None:
    from controller.routers import litellm_callback

    router = new_router(deployment("chat", "bot_stable", 100))
    [found] = litellm_callback.apply_groups(router, {"chat": group}, {})
    assert problem in found
    assert "silent_model" not in raw(router, "bot_stable")["litellm_params"]


def test_callback_takes_out_a_deployment_of_ours_that_the_file_does_not_name() -> None:
    """A stale or partial file (stable only, as after a completion or over a restarted proxy's
    config) never leaves a canary of ours serving; one without our marker stays as it is."""
    from controller.routers import litellm_callback

    hotfix = deployment("chat", "hotfix", 20, ours=False)
    router = new_router(deployment("chat", "bot_stable", 100), deployment("chat", "bot_canary", 20), hotfix)
    withdrawn: dict[str, dict[str, Any]] = {}
    assert litellm_callback.apply_groups(router, {"chat": {"bot_stable": {"weight": 100}}}, withdrawn) == []
    assert live(router) == {"bot_stable": 100, "hotfix": 20}
    assert set(withdrawn) == {"bot_canary"}


STRATEGIES = (  # every routing strategy LiteLLM 1.106.2 accepts (litellm.router_utils.routing_groups)
    "simple-shuffle",
    "least-busy",
    "usage-based-routing",
    "usage-based-routing-v2",
    "latency-based-routing",
    "cost-based-routing",
    "provider-budget-routing",
    "lar1",
)


def test_strategies_are_litellms() -> None:
    if litellm_proc.available():
        pytest.skip(litellm_proc.available())
    from litellm.router_utils.routing_groups import VALID_ROUTING_STRATEGIES

    assert set(STRATEGIES) == set(VALID_ROUTING_STRATEGIES)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_callback_names_the_routing_strategy_of_a_group(strategy: str) -> None:
    """The router-wide setting, a custom strategy that replaced the router's choice (lar1), and a
    routing group that claims the model group with its own strategy."""
    from controller.routers import litellm_callback

    router = new_router(
        deployment("chat", "bot_stable", 100), deployment("other", "o_1", 1, ours=False), routing_strategy=strategy
    )
    assert litellm_callback.routing_strategy(router, "chat") == strategy
    assert litellm_callback.stamp(router) == 1  # ours only: o_1 has no model_info.rollout
    assert raw(router, "bot_stable")["model_info"]["rollout"] == {"routing_strategy": strategy}
    assert "rollout" not in raw(router, "o_1")["model_info"]
    assert litellm_callback.stamp(router) == 0
    if strategy == "lar1":
        return  # a custom strategy picks for every group: routing groups do not apply
    other = "least-busy" if strategy == "simple-shuffle" else "simple-shuffle"
    grouped = new_router(
        deployment("chat", "bot_stable", 100),
        routing_strategy=strategy,
        routing_groups=[{"group_name": "g", "models": ["chat"], "routing_strategy": other}],
    )
    assert litellm_callback.routing_strategy(grouped, "chat") == other


@pytest.mark.parametrize(
    ("rollout", "call", "expected"),
    [
        (None, {"messages": [{"role": "user", "content": "hi"}]}, None),
        ({"params": {}, "system_prompt": None}, {"messages": []}, None),
        (
            {"params": {"temperature": 0.2}, "system_prompt": "Be terse."},
            {"messages": [{"role": "user", "content": "hi"}], "temperature": 1.0},
            {
                "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}],
                "temperature": 0.2,
            },
        ),
        (
            {"params": {}, "system_prompt": "Be terse."},
            {"messages": [{"role": "system", "content": "client"}, {"role": "user", "content": "hi"}]},
            {
                "messages": [
                    {"role": "system", "content": "Be terse."},
                    {"role": "system", "content": "client"},
                    {"role": "user", "content": "hi"},
                ]
            },
        ),
    ],
    ids=["not-ours", "serves-nothing-more", "prompt-and-params-win", "before-the-clients-system-message"],
)
def test_served_request(rollout: dict[str, Any] | None, call: dict[str, Any], expected: dict[str, Any] | None) -> None:
    from controller.routers import litellm_callback

    info = {"id": "bot_canary"} | ({} if rollout is None else {"rollout": rollout})
    got = litellm_callback.served_request({**call, "model_info": info})
    if expected is None:
        assert got is None
    else:
        assert got is not None and {k: got[k] for k in expected} == expected


def test_served_request_refuses_a_call_that_cannot_carry_the_prompt() -> None:
    from controller.routers import litellm_callback

    info = {"id": "bot_canary", "rollout": {"system_prompt": "Be terse."}}
    with pytest.raises(litellm_callback.Refused, match="system prompt"):
        litellm_callback.served_request({"input": "hi", "metadata": {"model_info": info}})


def test_watcher_stamps_without_a_weights_file(tmp_path: Path) -> None:
    from controller.routers import litellm_callback

    router = new_router(deployment("chat", "bot_stable", 100), routing_strategy="least-busy")
    watcher = litellm_callback.WeightsWatcher(str(tmp_path / "absent.json"))
    assert watcher.tick(router) is False
    assert raw(router, "bot_stable")["model_info"]["rollout"]["routing_strategy"] == "least-busy"


# -- cohorts: why a LiteLLM router refuses them (carries.NO_COHORTS), measured on a real litellm.Router ------


def test_tag_routing_blends_the_cohorts_a_request_matches_and_starves_untagged_deployments() -> None:
    """Were cohorts carried by tag routing (a stable and a canary deployment per cohort, tagged with its
    values; everyone's two tagged `default`), a request matching two cohorts would get a blend of their
    splits, not the first cohort's, and a deployment added by hand would get no untagged request. If a
    LiteLLM upgrade makes this fail, the refusal's reason is out of date."""
    missing = litellm_proc.available()
    if missing:
        pytest.skip(missing)
    from litellm import Router

    def dep(dep_id: str, weight: int, tags: list[str] | None) -> dict[str, Any]:
        params = {"model": f"openai/{dep_id}", "api_base": "http://127.0.0.1:9/v1", "api_key": "x", "weight": weight}
        return {
            "model_name": "chat",
            "litellm_params": params | ({"tags": tags} if tags else {}),
            "model_info": {"id": dep_id},
        }

    router = Router(
        model_list=[
            dep("stable", 95, ["default"]),
            dep("canary", 5, ["default"]),
            dep("internal_stable", 50, ["user_group:internal"]),
            dep("internal_canary", 50, ["user_group:internal"]),
            dep("beta_stable", 75, ["tenant_tier:beta"]),
            dep("beta_canary", 25, ["tenant_tier:beta"]),
            dep("hotfix", 20, None),  # an operator's, untagged
        ],
        enable_tag_filtering=True,
    )

    async def picks(tags: list[str], n: int = 2000) -> collections.Counter[str]:
        kwargs = {"metadata": {"tags": tags}}
        messages = [{"role": "user", "content": "hi"}]
        got = [
            await router.async_get_available_deployment(model="chat", messages=messages, request_kwargs=kwargs)
            for _ in range(n)
        ]
        return collections.Counter(d["model_info"]["id"] for d in got)

    both = asyncio.run(picks(["user_group:internal", "tenant_tier:beta"]))
    assert set(both) == {
        "internal_stable",
        "internal_canary",
        "beta_stable",
        "beta_canary",
    }  # both cohorts' deployments
    canary = both["internal_canary"] + both["beta_canary"]
    assert abs(canary - 2000 * 0.375) <= 4 * (2000 * 0.375 * 0.625) ** 0.5  # (50 + 25) / 200: neither cohort's split
    untagged = asyncio.run(picks([]))
    assert set(untagged) == {"stable", "canary"}  # the hand-added deployment's weight 20 gets nothing

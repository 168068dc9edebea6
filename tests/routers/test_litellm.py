"""The LiteLLM router's pure parts (parsing /model/info, weight checks, the rendered model_list, the
LiteLLM gate flavour) and the proxy callback applied to a real in-process `litellm.Router`."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controller import errors, spec, templates
from controller.routers import base, litellm
from tests.helpers import litellm_proc

S, C = base.STABLE, base.CANARY
WHERE = "router 'gateway' route 'chat'"


def row(group: str, dep_id: str, weight: Any) -> dict[str, Any]:
    params = {"model": "openai/x"} | ({} if weight is None else {"weight": weight})
    return {"model_name": group, "litellm_params": params, "model_info": {"id": dep_id}}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([row("chat", "bot_stable", 90), row("chat", "bot_canary", 10)], {S: 90, C: 10}),
        ([row("chat", "bot_stable", 100)], {S: 100, C: 0}),  # the canary is out of rotation
        ([row("chat", "bot_canary", 100)], {S: 0, C: 100}),
        ([row("chat", "bot_stable", 100), row("other", "x_stable", 7)], {S: 100, C: 0}),
        ([row("other", "x_stable", 100)], None),
        ([], None),
    ],
    ids=["split", "canary-withdrawn", "stable-withdrawn", "other-groups-ignored", "absent", "empty"],
)
def test_parse_group(rows: list[dict[str, Any]], expected: dict[str, int] | None) -> None:
    state = litellm.parse_group({"data": rows}, route="chat", rollout="bot", where=WHERE)
    assert (dict(state.weights) if state else None) == expected
    assert state is None or state.shadow == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"data": [row("chat", "bot_stable", None)]}, "has weight None"),
        ({"data": [row("chat", "bot_stable", 0.5)]}, "not a whole percent"),
        ({"data": [row("chat", "bot_stable", 30), row("chat", "bot_canary", 30)]}, "sum to 100"),
        ({"data": [row("chat", "bot_stable", 100), row("chat", "azure-eu", 1)]}, "no rollout manages"),
        ({"models": []}, "'data' list"),
        ([], "'data' list"),
    ],
    ids=["no-weight", "fraction", "not-100", "stranger-in-group", "no-data", "not-an-object"],
)
def test_parse_group_refuses_what_it_cannot_trust(data: Any, message: str) -> None:
    with pytest.raises(errors.RouterStateError, match=message) as raised:
        litellm.parse_group(data, route="chat", rollout="bot", where=WHERE)
    assert WHERE in str(raised.value)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (base.RouteState({S: 95, C: 5}), {"bot_stable": 95, "bot_canary": 5}),
        (base.RouteState({S: 100, C: 0}), {"bot_stable": 100, "bot_canary": 0}),
        (base.RouteState({S: 100}), {"bot_stable": 100}),
        (base.RouteState({S: 50, C: 50}, 10), "cannot mirror"),
        (base.RouteState({S: 50, C: 25, "blue": 25}), "only stable and canary"),
    ],
    ids=["canary-5", "rollback", "stable-only", "shadow-refused", "third-variant-refused"],
)
def test_weights_for(state: base.RouteState, expected: dict[str, int] | str) -> None:
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
            "model_info": {"id": "support-bot_stable"},
        },
        {
            "model_name": "support-chat",
            "litellm_params": {"model": "openai/b-2025", "weight": 5},
            "model_info": {"id": "support-bot_canary"},
        },
        {
            "model_name": "triage",
            "litellm_params": {**rendered[0]["litellm_params"], "weight": 100},
            "model_info": {"id": "triage_stable"},
        },
    ]
    assert litellm.weights_document(groups) == {
        "version": litellm.FORMAT_VERSION,
        "groups": {
            "support-chat": {"support-bot_stable": 95, "support-bot_canary": 5},
            "triage": {"triage_stable": 100},
        },
    }


@pytest.mark.parametrize(
    ("weights", "deployments", "message"),
    [
        ({S: 0, C: 0}, {}, "never all 0"),
        ({S: 100, C: 0}, {"m": {"weight": 3}}, "sets a weight"),
    ],
    ids=["all-zero", "weight-in-deployments"],
)
def test_model_list_refuses(weights: dict[str, int], deployments: dict[str, Any], message: str) -> None:
    group = litellm.GroupSpec("bot", "chat", {S: "m", C: "n"}, weights)
    with pytest.raises(errors.RouterError, match=message):
        litellm.model_list([group], deployments=deployments)


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
        assert "litellm_deployment_total_requests_total" not in query


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
    config = spec.LitellmRouter.model_validate(
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

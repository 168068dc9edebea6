"""The Unleash router against a real Unleash server, judged by Unleash's own Python SDK (`UnleashClient`,
which evaluates with Unleash's Yggdrasil engine): the split it serves, its stickiness, a canary user who
stays canary as the weight grows, cohorts by their own weight and precedence; and what the router
refuses (a strategy it did not write). The contract every router keeps is in test_contract*.py.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from UnleashClient import UnleashClient

from controller import errors, spec, traffic
from controller.routers import base, factory, unleash
from tests.helpers import net, unleash_proc
from tests.helpers.live_routers import unleash_router

S, C = traffic.STABLE, traffic.CANARY
SERVED = {
    S: traffic.Served(
        "openai/m-2025-01-01", "rollouts/b/prompts/v1.md", "aaaaaaaaaaaa", {"temperature": 0}, "Be brief."
    ),
    C: traffic.Served(
        "openai/m-2025-06-01", "rollouts/b/prompts/v2.md", "bbbbbbbbbbbb", {"temperature": 0}, "Be kind."
    ),
}
USERS = [f"user-{i}" for i in range(3000)]
BETA = traffic.CohortSplit("beta", "tenantTier", ("beta", "trial"), 40)
INTERNAL = traffic.CohortSplit("internal", "userGroup", ("internal",), 100)

pytestmark = pytest.mark.slow


def state(canary: int, *cohorts: traffic.CohortSplit) -> traffic.RouteState:
    return traffic.RouteState({S: 100 - canary, C: canary}, 0, SERVED, cohorts=cohorts)


@pytest.fixture
def server(unleash_server: unleash_proc.Server) -> unleash_proc.Server:
    unleash_server.delete_flags(["bot", "team~bot"])
    return unleash_server


@contextlib.contextmanager
def sdk(server: unleash_proc.Server, tmp_path: Path) -> Iterator[Any]:
    """Unleash's Python SDK, initialised against the server (one fetch of what the client API serves)."""
    client = UnleashClient(
        url=server.url + "/api",
        app_name="rollouts-test",
        environment=server.environment,
        custom_headers={"Authorization": server.client_token},
        disable_metrics=True,
        disable_registration=True,
        cache_directory=str(tmp_path),
        refresh_interval=3600,
    )
    client.initialize_client()
    try:
        yield client
    finally:
        client.destroy()


def variants(client: Any, flag: str, context: Mapping[str, str] | None = None) -> dict[str, str]:
    """user id -> the variant the SDK serves that user."""
    return {u: client.get_variant(flag, {"userId": u, **(context or {})})["name"] for u in USERS}


def assert_share(served: Mapping[str, str], percent: int) -> None:
    """The canary's share of USERS is `percent` within five standard deviations (a binomial bound)."""
    n, p = len(served), percent / 100
    canary = sum(v == C for v in served.values())
    if percent in (0, 100):
        assert canary == n * p, (canary, percent)
    assert abs(canary - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1e-9, (canary, n, percent)


def test_the_sdk_serves_the_split_sticky_with_each_variants_payload(
    server: unleash_proc.Server, tmp_path: Path
) -> None:
    router = unleash_router(server)
    base.apply(router, {"bot": state(10)}).state("bot")
    with sdk(server, tmp_path) as client:
        first = variants(client, "bot")
        assert variants(client, "bot") == first  # the same user gets the same variant, every time
        assert_share(first, 10)
        for name in (S, C):
            user = next(u for u, v in first.items() if v == name)
            payload = client.get_variant("bot", {"userId": user})["payload"]
            assert payload["type"] == "json"
            assert json.loads(payload["value"]) == SERVED[name].to_json(prompt_text=True)


def test_a_canary_user_stays_canary_as_the_weight_grows(server: unleash_proc.Server, tmp_path: Path) -> None:
    router = unleash_router(server)
    seen = {}
    for percent in (5, 25, 60, 0):
        base.apply(router, {"bot": state(percent)}).state("bot")
        with sdk(server, tmp_path / str(percent)) as client:
            seen[percent] = variants(client, "bot")
        assert_share(seen[percent], percent)
    canary = {p: {u for u, v in served.items() if v == C} for p, served in seen.items()}
    assert canary[5] <= canary[25] <= canary[60]
    assert canary[0] == set()


def test_cohorts_route_their_users_by_their_own_weight_and_the_first_cohort_decides(
    server: unleash_proc.Server, tmp_path: Path
) -> None:
    router = unleash_router(server)
    live = base.apply(router, {"bot": state(5, BETA, INTERNAL)}).state("bot")
    assert live.cohorts == (BETA, INTERNAL)
    with sdk(server, tmp_path) as client:
        assert_share(variants(client, "bot"), 5)
        assert_share(variants(client, "bot", {"tenantTier": "trial"}), 40)
        assert set(variants(client, "bot", {"userGroup": "internal"}).values()) == {C}
        # in both cohorts: beta is first, so its 40% decides, never internal's 100% behind it
        both = variants(client, "bot", {"tenantTier": "beta", "userGroup": "internal"})
        assert both == variants(client, "bot", {"tenantTier": "beta"})
        assert_share(both, 40)


def test_a_request_without_the_stickiness_field_gets_stable(server: unleash_proc.Server, tmp_path: Path) -> None:
    base.apply(unleash_router(server), {"bot": state(100)}).state("bot")
    with sdk(server, tmp_path) as client:
        assert client.get_variant("bot", {"userId": "someone"})["name"] == C
        assert client.get_variant("bot", {"sessionId": "s-1"})["name"] == S  # stickiness userId: no user, no canary


def test_a_route_with_a_slash_is_the_flag_with_a_tilde(server: unleash_proc.Server) -> None:
    live = base.apply(unleash_router(server), {"team/bot": state(30)}).state("team/bot")
    assert live.same_traffic(state(30))
    assert server.served("team~bot") is not None


def _hand_made(server: unleash_proc.Server, *, disabled: bool) -> None:
    path = f"/api/admin/projects/default/features/bot/environments/{server.environment}/strategies"
    body = {"name": "flexibleRollout", "title": "by hand", "disabled": disabled,
            "parameters": {"rollout": "100", "stickiness": "default", "groupId": "bot"},
            "constraints": [{"contextName": "userId", "operator": "IN", "values": ["vip"]}], "sortOrder": -1}  # fmt: skip
    with server.admin() as admin:
        admin.post(path, json=body).raise_for_status()


def test_a_strategy_written_by_hand_is_never_changed_and_refuses_the_write(server: unleash_proc.Server) -> None:
    router = unleash_router(server)
    base.apply(router, {"bot": state(10)}).state("bot")
    _hand_made(server, disabled=False)
    before = server.strategies(["bot"])
    with pytest.raises(errors.RouterError, match=r"'by hand'.* was not written by the rollout controller"):
        router.write({"bot": state(0)})
    assert server.strategies(["bot"]) == before
    error = net.wait_for("the client API to serve the strategy made by hand", lambda: _refused(router))
    assert "was not written by the rollout controller" in str(error) and "'bot'" in str(error)


def _refused(router: unleash.UnleashRouter) -> errors.RouterStateError | None:
    live = router.read(["bot"])["bot"]
    return live if isinstance(live, errors.RouterStateError) else None


def test_a_disabled_strategy_written_by_hand_is_left_as_it_is(server: unleash_proc.Server) -> None:
    router = unleash_router(server)
    base.apply(router, {"bot": state(10)}).state("bot")
    _hand_made(server, disabled=True)
    live = base.apply(router, {"bot": state(20, BETA)}).state("bot")
    assert live.same_traffic(state(20, BETA))
    hand = [s for s in server.strategies(["bot"])["bot"]["strategies"] if s["title"] == "by hand"]
    assert len(hand) == 1 and hand[0]["disabled"] is True


def test_the_factory_reads_the_tokens_from_the_environment_and_never_says_them(server: unleash_proc.Server) -> None:
    config = spec.UnleashRouterConfig(type="unleash", url=server.url, environment=server.environment)
    env = {"UNLEASH_ADMIN_TOKEN": server.admin_token, "UNLEASH_CLIENT_TOKEN": server.client_token}
    router = factory.build("flags", config, root=Path("."), env=env)
    assert isinstance(router, unleash.UnleashRouter)
    assert base.apply(router, {"bot": state(15)}).state("bot").same_traffic(state(15))
    wrong = factory.build("flags", config, root=Path("."), env={**env, "UNLEASH_ADMIN_TOKEN": "*:*.not-the-token"})
    with pytest.raises(errors.RouterError, match="refused the admin API token") as raised:
        wrong.write({"bot": state(0)})
    assert "not-the-token" not in str(raised.value) and server.admin_token not in str(raised.value)

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
from tests.helpers.routes import read_one

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


def _path(server: unleash_proc.Server, flag: str = "bot") -> str:
    return f"/api/admin/projects/default/features/{flag}/environments/{server.environment}/strategies"


def _hand_made(server: unleash_proc.Server, *, disabled: bool, ahead: bool = True) -> dict[str, Any]:
    """A strategy made by hand in the Unleash UI: ahead of ours (sortOrder -1), or where the UI puts a new
    one (Unleash gives it the next sortOrder: behind our catch-all). What Unleash created."""
    body = {"name": "flexibleRollout", "title": "by hand", "disabled": disabled,
            "parameters": {"rollout": "100", "stickiness": "default", "groupId": "bot"},
            "constraints": [{"contextName": "userId", "operator": "IN", "values": ["vip"]}]}  # fmt: skip
    with server.admin() as admin:
        response = admin.post(_path(server), json={**body, "sortOrder": -1} if ahead else body)
        response.raise_for_status()
        made: dict[str, Any] = response.json()
    return made


def _by_hand(server: unleash_proc.Server) -> list[dict[str, Any]]:
    """The strategies not written by the rollout controller, as the admin API has them now."""
    return [s for s in server.strategies(["bot"])["bot"]["strategies"] if s["parameters"].get("managedBy") is None]


def _key(strategy: Mapping[str, Any]) -> tuple[str, str]:
    """Which of our strategies this is: (cohort or '', role), as `unleash.Strategy.key` names it."""
    return (strategy["parameters"].get("cohort", ""), strategy["variants"][0]["name"])


def _refused(router: unleash.UnleashRouter) -> errors.RouterStateError | None:
    live = router.read(["bot"])["bot"]
    return live if isinstance(live, errors.RouterStateError) else None


def test_a_strategy_by_hand_ahead_of_ours_refuses_a_raise_and_never_blocks_a_rollback(
    server: unleash_proc.Server, tmp_path: Path
) -> None:
    router = unleash_router(server)
    base.apply(router, {"bot": state(50, BETA)}).state("bot")
    _hand_made(server, disabled=False)
    before = server.strategies(["bot"])
    with pytest.raises(errors.RouterError, match=r"'by hand'.* was not written by the rollout controller"):
        router.write({"bot": state(60, BETA)})
    assert server.strategies(["bot"]) == before
    error = net.wait_for("the client API to serve the strategy made by hand", lambda: _refused(router))
    assert "was not written by the rollout controller" in str(error) and "'bot'" in str(error)
    hand = _by_hand(server)
    # a rollback goes ahead, on our strategies only; the read-back still cannot read past the hand-made one
    applied = base.apply(router, {"bot": state(50, BETA).lowered()})
    assert isinstance(applied.failed["bot"], errors.RouterStateError)
    assert _by_hand(server) == hand
    with sdk(server, tmp_path) as client:
        assert set(variants(client, "bot").values()) == {S}
        assert set(variants(client, "bot", {"tenantTier": "beta"}).values()) == {S}


def test_a_strategy_by_hand_behind_our_catch_all_is_passed_over_by_reads_and_left_in_place_by_a_lowering(
    server: unleash_proc.Server, tmp_path: Path
) -> None:
    """A QA strategy added in the UI after ours (a user-id list) is reached by no request: the read
    passes it over, a write that lowers the canary leaves it where it is (sortOrder and all) even when
    it adds strategies of ours, and only a write that raises the canary is refused beside it."""
    router = unleash_router(server)
    base.apply(router, {"bot": state(50, BETA)}).state("bot")
    made = _hand_made(server, disabled=False, ahead=False)
    assert made["sortOrder"] == len(unleash.strategies(state(50, BETA), stickiness="userId"))
    net.wait_for("the client API to serve it", lambda: "vip" in json.dumps(server.served("bot")))
    live = read_one(router, "bot")
    assert live is not None and live.same_traffic(state(50, BETA)) and live.same_revisions(state(50, BETA))
    before = server.strategies(["bot"])
    with pytest.raises(errors.RouterError, match=r"'by hand'.* was not written by the rollout controller"):
        router.write({"bot": state(60, BETA)})
    assert server.strategies(["bot"]) == before
    hand = _by_hand(server)
    # lower everyone to 10% and open internal ahead of beta at everyone's weight: four strategies more
    internal = traffic.CohortSplit("internal", "userGroup", ("internal",), 10)
    lower = state(10, internal, BETA)
    assert lower.cohorts == (internal, BETA) and not state(50, BETA).raises(lower)
    assert base.apply(router, {"bot": lower}).state("bot").cohorts == (internal, BETA)
    assert _by_hand(server) == hand
    with sdk(server, tmp_path / "lower") as client:
        assert_share(variants(client, "bot", {"userGroup": "internal", "tenantTier": "beta"}), 10)
        assert_share(variants(client, "bot", {"tenantTier": "beta"}), 40)
        # ours decide even for the user it names (it carries no variant: reached, it would serve none of ours)
        assert client.get_variant("bot", {"userId": "vip"})["name"] in (S, C)
    assert traffic.exposure_free(base.apply(router, {"bot": lower.lowered()}).state("bot"))
    assert _by_hand(server) == hand


def test_a_disabled_strategy_written_by_hand_is_left_as_it_is(server: unleash_proc.Server) -> None:
    router = unleash_router(server)
    base.apply(router, {"bot": state(10)}).state("bot")
    _hand_made(server, disabled=True)
    live = base.apply(router, {"bot": state(20, BETA)}).state("bot")
    assert live.same_traffic(state(20, BETA))
    hand = [s for s in server.strategies(["bot"])["bot"]["strategies"] if s["title"] == "by hand"]
    assert len(hand) == 1 and hand[0]["disabled"] is True


def test_a_write_cut_off_half_way_reads_as_a_revision_no_spec_has_and_the_next_write_heals_it(
    server: unleash_proc.Server, tmp_path: Path
) -> None:
    """Each strategy carries its own copy of its variant's payload. A write of a new canary cut off after
    the cohort's strategies must not read back as done while everyone's canary still serves the old one."""
    router = unleash_router(server)
    old = state(10, BETA)
    base.apply(router, {"bot": old}).state("bot")
    fresh = traffic.Served("openai/m-2025-09-01", "rollouts/b/prompts/v3.md", "cccccccccccc", {}, "Be exact.")
    new = traffic.RouteState(old.weights, 0, {**SERVED, C: fresh}, cohorts=old.cohorts)
    first = unleash.strategies(new, stickiness="userId")[0]
    assert first.key == ("beta", C)
    target = next(s for s in server.strategies(["bot"])["bot"]["strategies"] if _key(s) == first.key)
    with server.admin() as admin:  # the first call of the write of `new`, and no other
        admin.put(f"{_path(server)}/{target['id']}", json=first.body("bot")).raise_for_status()
    net.wait_for("the client API to serve the half", lambda: "cccccccccccc" in json.dumps(server.served("bot")))
    live = read_one(router, "bot")
    assert live is not None and live.same_traffic(new)
    assert not live.same_revisions(new) and not live.same_revisions(old)
    assert "different payloads" in live.served[C].revision
    healed = base.apply(router, {"bot": new}).state("bot")
    assert healed.served[C].revision == "cccccccccccc"
    with sdk(server, tmp_path) as client:
        user = next(u for u, v in variants(client, "bot").items() if v == C)
        assert json.loads(client.get_variant("bot", {"userId": user})["payload"]["value"])["revision"] == "cccccccccccc"


BETA_25 = traffic.CohortSplit("beta", "tenantTier", ("beta",), 25)
INTERNAL_50 = traffic.CohortSplit("internal", "userGroup", ("internal",), 50)
# the router writes: beta canary, beta stable, internal canary, internal stable, canary, stable
ORDERED = state(10, BETA_25, INTERNAL_50)


@pytest.mark.parametrize(
    ("order", "why"),
    [
        ((0, 2, 1, 3, 4, 5), "'beta''s canary strategy must be followed by its stable one"),
        ((1, 0, 2, 3, 4, 5), "cohort 'beta' must open with its canary strategy"),
        ((0, 1, 4, 2, 3, 5), "comes after everyone's split"),
        ((0, 1, 2, 3, 5, 4), "not in the router's order"),
    ],
    ids=["cohorts-interleaved", "cohort-stable-first", "cohort-after-everyone", "everyone-stable-first"],
)
def test_strategies_dragged_out_of_the_routers_order_are_the_routes_error_and_a_write_restores_it(
    server: unleash_proc.Server, tmp_path: Path, order: tuple[int, ...], why: str
) -> None:
    router = unleash_router(server)
    base.apply(router, {"bot": ORDERED}).state("bot")
    ours = server.strategies(["bot"])["bot"]["strategies"]
    assert [_key(s) for s in ours] == [s.key for s in unleash.strategies(ORDERED, stickiness="userId")]
    with server.admin() as admin:  # a drag and drop in the UI
        sorted_ = [{"id": ours[i]["id"], "sortOrder": n} for n, i in enumerate(order)]
        admin.post(f"{_path(server)}/set-sort-order", json=sorted_).raise_for_status()
    error = net.wait_for("the client API to serve the new order", lambda: _refused(router))
    assert why in str(error) and "'bot'" in str(error)
    if order == (0, 2, 1, 3, 4, 5):  # why: a user in both cohorts gets internal's 50%, which no state says
        with sdk(server, tmp_path) as client:
            assert_share(variants(client, "bot", {"tenantTier": "beta", "userGroup": "internal"}), 50)
    live = base.apply(router, {"bot": ORDERED}).state("bot")
    assert live.same_traffic(ORDERED) and live.cohorts == ORDERED.cohorts


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


def test_credentials_in_the_url_appear_in_no_location_nor_error(server: unleash_proc.Server) -> None:
    # httpx sends a URL's user:password as basic auth in place of the API token, so Unleash refuses the
    # call: that error must not say them either
    with_them = server.url.replace("http://", "http://ops:hunter2@")
    router = unleash.UnleashRouter("flags", with_them, admin_token=server.admin_token, client_token=server.client_token)
    down = unleash.UnleashRouter(
        "flags", f"http://ops:hunter2@127.0.0.1:{net.free_port()}", admin_token="a", client_token="b"
    )
    said = [router.location, down.location]
    for failing, errs in ((router, errors.RouterError), (down, errors.RouterUnavailable)):
        with pytest.raises(errs) as raised:
            failing.write({"bot": state(10)})
        said.append(str(raised.value))
        with pytest.raises(errs) as raised:
            failing.read(["bot"])
        said.append(str(raised.value))
    assert "***@127.0.0.1" in said[0] and "***@127.0.0.1" in said[-1]
    assert not [text for text in said if "hunter2" in text or "ops:" in text]

"""The flags router: the flag it writes, checked by flagd's own parsers (the Python flagd core, and the
JavaScript flagd core's strict parser with the upstream flag schema) and by our stricter subset schema,
then evaluated by the real OpenFeature flagd provider (in-process file resolver) the way an application would;
a flag with cohorts is evaluated by the JavaScript flagd core as well, and both must route each request by its
cohort.
"""

from __future__ import annotations

import collections
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.contrib.tools.flagd.core.model.flag_store import FlagStore
from openfeature.evaluation_context import EvaluationContext

from controller import errors, load, plan, repo, spec, traffic
from controller.routers import base, flagd
from controller.routers import factory as router_factory
from tests.helpers.flagd_js import SCHEMA, TESTS, run_js, upstream_errors

S, C = traffic.STABLE, traffic.CANARY
ROUTE = "triage"
EXAMPLES = TESTS / "fixtures" / "repo" / "rollouts"
SERVED = {
    S: traffic.Served(
        "acme/triage-8b",
        "rollouts/ticket-triage/prompts/triage-v7.md",
        "1111aaaa2222",
        {"temperature": 0},
        "Triage v7.",
    ),
    C: traffic.Served(
        "acme/triage-8b",
        "rollouts/ticket-triage/prompts/triage-v8.md",
        "3333bbbb4444",
        {"temperature": 0},
        "Triage v8.",
    ),
}
USERS = [f"user-{i}" for i in range(10_000)]
INTERNAL = traffic.CohortSplit("internal", "user_group", ("internal",), 50)
BETA = traffic.CohortSplit("beta", "tenant_tier", ("beta", "trial"), 25)


def state(
    canary: int,
    shadow: int = 0,
    served: dict[str, traffic.Served] = SERVED,
    *,
    cohorts: tuple[traffic.CohortSplit, ...] = (),
) -> traffic.RouteState:
    return traffic.RouteState({S: 100 - canary, C: canary}, shadow, served, cohorts=cohorts)


@pytest.mark.parametrize(
    "desired",
    [
        state(0),
        state(5, 50),
        state(100),
        state(30, served={}),
        traffic.RouteState({S: 100}, 0, {S: SERVED[S]}),
        state(0, cohorts=(INTERNAL,)),
        state(5, 10, cohorts=(INTERNAL, BETA)),
    ],
    ids=[
        "stable-only-traffic",
        "canary-with-shadow",
        "all-canary",
        "no-served-info",
        "single-variant",
        "one-cohort",
        "two-cohorts",
    ],
)
def test_written_file_is_valid_for_flagd(tmp_path: Path, desired: traffic.RouteState) -> None:
    router = flagd.FlagdRouter("flags", tmp_path / "flags.json")
    base.apply(router, {ROUTE: desired}).state(ROUTE)
    document = json.loads((tmp_path / "flags.json").read_text("utf-8"))
    jsonschema.validate(document, SCHEMA)
    assert FlagStore().update(document) == [ROUTE]  # flagd's own parser accepts it too
    assert upstream_errors([document]) == [None]  # and so does the upstream schema


def test_flag_shape() -> None:
    got = flagd.flag(state(10, 25))
    assert got["targeting"] == {"fractional": [flagd.BUCKET_BY, [C, 10], [S, 90]]}  # the canary's buckets first
    assert got["defaultVariant"] == S
    assert got["variants"][C] == {
        "model": "acme/triage-8b",
        "prompt": "rollouts/ticket-triage/prompts/triage-v8.md",
        "promptText": "Triage v8.",
        "revision": "3333bbbb4444",
        "params": {"temperature": 0},
    }
    assert got["metadata"]["shadow"] == 25
    assert "cohorts" not in got["metadata"]


def test_cohort_flag_shape() -> None:
    """Each cohort is a condition on one context attribute and its own split, in precedence order,
    sharing everyone's buckets; everyone's split, unmanaged variants included, is the last branch."""
    current = flagd.flag(state(5))
    current["variants"]["hotfix"] = {"model": "acme/hotfix"}
    current["targeting"]["fractional"].append(["hotfix", 20])
    got = flagd.flag(traffic.RouteState({S: 75, C: 5}, 0, SERVED, {"hotfix": 20}, cohorts=(INTERNAL, BETA)), current)
    assert got["targeting"] == {
        "if": [
            {"in": [{"var": "user_group"}, ["internal"]]},
            {"fractional": [flagd.BUCKET_BY, [C, 50], [S, 50]]},
            {"in": [{"var": "tenant_tier"}, ["beta", "trial"]]},
            {"fractional": [flagd.BUCKET_BY, [C, 25], [S, 75]]},
            {"fractional": [flagd.BUCKET_BY, [C, 5], [S, 75], ["hotfix", 20]]},
        ]
    }
    assert got["metadata"]["cohorts"] == "internal,beta"
    live = flagd.parse_flag(got, where="test")
    assert live.cohorts == (INTERNAL, BETA) and dict(live.others) == {"hotfix": 20}


def _cohort_targeting(data: dict[str, Any]) -> list[Any]:
    branches: list[Any] = data["targeting"]["if"]
    return branches


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.pop("targeting"), "not a 'fractional' split"),
        (lambda f: f["targeting"]["fractional"].append(["blue", 5]), "does not define"),
        (lambda f: f["targeting"]["fractional"].__setitem__(2, [S, "ninety"]), "whole percents"),
        (lambda f: f["targeting"]["fractional"].__setitem__(2, [S, 80]), "sum to 100"),
        (lambda f: f["targeting"]["fractional"].append([S, 0]), "twice"),
        (lambda f: f["targeting"].__setitem__("var", "x"), "not a 'fractional' split"),
        (lambda f: f["metadata"].__setitem__("cohorts", "internal"), "no cohort 'if'"),
        (lambda f: f.__setitem__("state", "DISABLED"), "not ENABLED"),
        (lambda f: f["metadata"].__setitem__("shadow", "lots"), "shadow"),
        (lambda f: f.__setitem__("variants", []), "no 'variants'"),
    ],
    ids=[
        "no-targeting",
        "unknown-variant",
        "weight-not-int",
        "sum-not-100",
        "variant-twice",
        "extra-operator",
        "cohort-names-without-if",
        "disabled",
        "bad-shadow",
        "no-variants",
    ],
)
def test_parse_flag_refuses_what_it_did_not_write(mutate: Callable[[dict[str, Any]], Any], message: str) -> None:
    data = flagd.flag(state(10))
    mutate(data)
    with pytest.raises(errors.RouterStateError, match=message):
        flagd.parse_flag(data, where="test")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f["metadata"].pop("cohorts"), "does not name them"),
        (lambda f: f["metadata"].__setitem__("cohorts", "internal"), "names 1 cohorts but the targeting has 2"),
        (lambda f: _cohort_targeting(f).pop(), "not cohort conditions and splits"),
        (lambda f: _cohort_targeting(f).__setitem__(4, {"if": []}), "not everyone's 'fractional'"),
        (lambda f: _cohort_targeting(f).__setitem__(0, {"==": [{"var": "user_group"}, "internal"]}), "condition"),
        (lambda f: _cohort_targeting(f)[0]["in"].__setitem__(0, {"var": ["user_group", "x"]}), "one attribute"),
        (lambda f: _cohort_targeting(f)[0]["in"].__setitem__(1, "internal"), "one attribute"),  # a substring test
        (lambda f: _cohort_targeting(f)[2]["in"][1].append(7), "one attribute"),
        (lambda f: _cohort_targeting(f).__setitem__(1, {"fractional": "oops"}), "split of cohort 'internal'"),
        (lambda f: _cohort_targeting(f)[1]["fractional"].append(["previous", 0]), "does not define"),
        (lambda f: _cohort_targeting(f)[3]["fractional"].__setitem__(2, [S, 70]), "summing to 100"),
        (lambda f: _cohort_targeting(f).insert(4, {"fractional": []}), "not cohort conditions and splits"),
        (lambda f: f["targeting"].__setitem__("fractional", []), "not cohort conditions and splits"),
    ],
    ids=[
        "names-missing",
        "names-too-few",
        "even-branches",
        "everyone-not-fractional",
        "condition-not-in",
        "var-not-a-key",
        "values-not-a-list",
        "value-not-a-string",
        "cohort-split-malformed",
        "cohort-split-unknown-variant",
        "cohort-split-not-100",
        "extra-branch",
        "extra-operator",
    ],
)
def test_parse_flag_refuses_cohorts_it_did_not_write(mutate: Callable[[dict[str, Any]], Any], message: str) -> None:
    data = flagd.flag(state(5, cohorts=(INTERNAL, BETA)))
    assert flagd.parse_flag(data, where="test").cohorts == (INTERNAL, BETA)
    mutate(data)
    with pytest.raises(errors.RouterStateError, match=message):
        flagd.parse_flag(data, where="test")


def test_other_flags_in_the_file_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    theirs = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"}
    path.write_text(json.dumps({"flags": {"dark-mode": theirs}}), "utf-8")
    base.apply(flagd.FlagdRouter("flags", path), {ROUTE: state(5)}).state(ROUTE)
    assert json.loads(path.read_text("utf-8"))["flags"]["dark-mode"] == theirs


# -- evaluated by the real flagd provider ------------------------------------------------------


@pytest.fixture
def flags_file(tmp_path: Path) -> Path:
    return tmp_path / "flags" / "rollouts.flagd.json"


@pytest.fixture
def reader(flags_file: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[], OpenFeatureClient]]:
    """Open OpenFeature clients on the file, each with its own in-process flagd provider."""
    domains: list[str] = []

    def open_client() -> OpenFeatureClient:
        domain = f"{request.node.name}-{len(domains)}"
        provider = FlagdProvider(
            resolver_type=ResolverType.FILE, offline_flag_source_path=str(flags_file), deadline_ms=50
        )
        api.set_provider_and_wait(provider, domain)
        domains.append(domain)
        return api.get_client(domain)

    try:
        yield open_client
    finally:
        api.clear_providers()


def variants(client: OpenFeatureClient, users: list[str]) -> dict[str, str | None]:
    out = {}
    for user in users:
        details = client.get_object_details(ROUTE, {}, EvaluationContext(targeting_key=user))
        assert details.error_code is None, details
        out[user] = details.variant
    return out


@pytest.mark.slow
@pytest.mark.parametrize("canary", [1, 10, 50], ids=["1%", "10%", "50%"])
def test_split_over_10000_users(flags_file: Path, reader: Callable[[], OpenFeatureClient], canary: int) -> None:
    base.apply(flagd.FlagdRouter("flags", flags_file), {ROUTE: state(canary)}).state(ROUTE)
    counts = collections.Counter(variants(reader(), USERS).values())
    assert set(counts) == {S, C}
    # 4 standard deviations of a binomial over 10,000 keys: about 0.4 points at 1%, 2 points at 50%
    tolerance = 4 * (len(USERS) * canary / 100 * (1 - canary / 100)) ** 0.5
    assert abs(counts[C] - len(USERS) * canary / 100) <= tolerance, counts


@pytest.mark.slow
def test_the_value_is_what_the_variant_serves(flags_file: Path, reader: Callable[[], OpenFeatureClient]) -> None:
    base.apply(flagd.FlagdRouter("flags", flags_file), {ROUTE: state(50)}).state(ROUTE)
    client = reader()
    for user in USERS[:50]:
        details = client.get_object_details(ROUTE, {}, EvaluationContext(targeting_key=user))
        served = SERVED[str(details.variant)]
        assert details.value == {
            "model": served.model,
            "prompt": served.prompt,
            "promptText": served.prompt_text,
            "revision": served.revision,
            "params": dict(served.params),
        }


@pytest.mark.slow
def test_a_user_stays_on_one_variant(flags_file: Path, reader: Callable[[], OpenFeatureClient]) -> None:
    base.apply(flagd.FlagdRouter("flags", flags_file), {ROUTE: state(25)}).state(ROUTE)
    users = USERS[:2000]
    first = variants(reader(), users)
    assert variants(reader(), users) == first  # another reader, another provider: same answers
    assert variants(reader(), users) == first


@pytest.mark.slow
def test_ramp_keeps_canary_users_on_canary(flags_file: Path, reader: Callable[[], OpenFeatureClient]) -> None:
    router = flagd.FlagdRouter("flags", flags_file)
    users = USERS[:3000]
    base.apply(router, {ROUTE: state(5)}).state(ROUTE)
    at_5 = variants(reader(), users)
    base.apply(router, {ROUTE: state(25)}).state(ROUTE)
    at_25 = variants(reader(), users)
    assert {u for u, v in at_5.items() if v == C} <= {u for u, v in at_25.items() if v == C}


@pytest.mark.slow
def test_a_change_is_picked_up_without_restarting_the_reader(
    flags_file: Path, reader: Callable[[], OpenFeatureClient]
) -> None:
    router = flagd.FlagdRouter("flags", flags_file)
    base.apply(router, {ROUTE: state(0)}).state(ROUTE)
    client = reader()
    users = USERS[:200]
    assert set(variants(client, users).values()) == {S}
    base.apply(router, {ROUTE: state(100)}).state(ROUTE)
    deadline = time.monotonic() + 30  # only stops a hung test; the watcher polls every 50 ms
    while set(variants(client, users).values()) != {C}:
        assert time.monotonic() < deadline, "the reader never saw the change"
        time.sleep(0.02)
    base.apply(router, {ROUTE: state(0)}).state(ROUTE)  # and the rollback too
    while set(variants(client, users).values()) != {S}:
        assert time.monotonic() < deadline, "the reader never saw the rollback"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("bad", "upstream_too"),
    [
        ({"flags": {ROUTE: {"variants": {S: {}}}}}, True),
        ({"flags": {ROUTE: {"state": "ON", "variants": {S: {}}}}}, True),
        ({"flags": {ROUTE: {"state": "ENABLED", "variants": {S: "gpt"}}}}, False),  # a string flag, not ours
        (
            {"flags": {ROUTE: {"state": "ENABLED", "variants": {S: {}}, "targeting": {"fractional": [{}, [S, 1.5]]}}}},
            True,
        ),
        (
            {
                "flags": {
                    ROUTE: {
                        "state": "ENABLED",
                        "variants": {S: {}},
                        "targeting": {
                            "if": [
                                {"in": [{"var": "tier"}, "beta"]},
                                {"fractional": [{}, [S, 1]]},
                                {"fractional": [{}, [S, 1]]},
                            ]
                        },
                    }
                }
            },
            False,
        ),  # a substring test (JSONLogic `in` on a string) is no cohort's condition
    ],
    ids=["no-state", "unknown-state", "string-variant", "fractional-weight-not-int", "cohort-in-a-string"],
)
def test_the_schemas_can_fail(bad: dict[str, Any], upstream_too: bool) -> None:
    """Our subset schema refuses each; the upstream schema refuses what is not a flag at all."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)
    [error] = upstream_errors([bad])
    if upstream_too:
        assert error is not None and "invalid flagd flag configuration" in error
    else:
        assert error is None


def _hand_added_hotfix(flags_file: Path) -> None:
    """An operator adds a variant of their own to the flag during an incident: 20% of everyone's users,
    taken from stable, appended to everyone's split (the last branch when the flag has cohorts)."""
    document = json.loads(flags_file.read_text())
    entry = document["flags"][ROUTE]
    entry["variants"]["hotfix"] = {"model": "acme/hotfix-model"}
    targeting = entry["targeting"]
    everyone = targeting["if"][-1] if "if" in targeting else targeting
    bucket_by, *split = everyone["fractional"]
    everyone["fractional"] = [bucket_by, *([n, w - 20 if n == S else w] for n, w in split), ["hotfix", 20]]
    flags_file.write_text(json.dumps(document))


@pytest.mark.slow
def test_lowering_a_shared_flag_takes_only_the_canary_out(
    flags_file: Path, reader: Callable[[], OpenFeatureClient]
) -> None:
    router = flagd.FlagdRouter("flags", flags_file)
    base.apply(router, {ROUTE: state(10)}).state(ROUTE)
    _hand_added_hotfix(flags_file)
    live = router.read([ROUTE])[ROUTE]
    assert isinstance(live, traffic.RouteState)
    assert dict(live.weights) == {S: 70, C: 10} and dict(live.others) == {"hotfix": 20}
    down = live.lowered()
    assert base.apply(router, {ROUTE: down}).state(ROUTE).same_traffic(down)
    counts = collections.Counter(variants(reader(), USERS).values())
    assert C not in counts  # the canary serves nobody
    assert abs(counts["hotfix"] - len(USERS) * 0.2) <= 4 * (len(USERS) * 0.2 * 0.8) ** 0.5  # the hotfix kept its users
    assert FlagStore().update(json.loads(flags_file.read_text())) == [ROUTE]


@pytest.mark.slow
def test_a_prompt_only_rollout_reaches_the_application_through_the_flag(
    tmp_path: Path, flags_file: Path, reader: Callable[[], OpenFeatureClient]
) -> None:
    """The example's prompt-only rollout (same model, two prompts) moved onto the flags router: the flag
    it writes passes flagd's parsers, and each user's evaluation, by the real provider, carries its
    variant's prompt text, since an application that reads only the flag has no checkout to read it from."""
    shutil.copytree(EXAMPLES, tmp_path / "rollouts")
    triage = tmp_path / "rollouts" / "ticket-triage" / "rollout.yaml"
    triage.write_text(triage.read_text("utf-8").replace("router: local", "router: flags"), "utf-8")
    result = load.load_repo(repo.WorkTree(tmp_path))
    loaded = result.rollout("ticket-triage")
    assert result.config is not None and loaded is not None, result.problems
    served = plan.served(loaded)
    assert served[S].model == served[C].model and served[S].prompt_text != served[C].prompt_text
    flags_config = result.config.routers["flags"]
    assert isinstance(flags_config, spec.FlagdRouterConfig)
    router = router_factory.build(
        "flags", flags_config.model_copy(update={"path": flags_file.name}), root=flags_file.parent, env={}
    )
    route = loaded.rollout.spec.route
    half = traffic.RouteState({S: 50, C: 50}, 0, served)
    assert base.apply(router, {route: half}).state(route).same_revisions(half)
    document = json.loads(flags_file.read_text("utf-8"))
    jsonschema.validate(document, SCHEMA)
    assert FlagStore().update(document) == [route]
    assert upstream_errors([document]) == [None]
    texts = {
        role: (tmp_path / loaded.prompts[role]).read_text("utf-8") for role in (S, C)
    }  # the prompt files, as the application never sees them
    client = reader()
    seen = collections.Counter()
    for user in USERS[:200]:
        details = client.get_object_details(route, {}, EvaluationContext(targeting_key=user))
        assert details.error_code is None, details
        value = details.value
        assert isinstance(value, dict)
        assert value["promptText"] == texts[str(details.variant)]
        assert value["model"] == served[S].model and value["params"] == dict(served[str(details.variant)].params)
        seen[details.variant] += 1
    assert set(seen) == {S, C}


@pytest.mark.parametrize("targeting", ["oops", [], {"fractional": "oops"}, None], ids=["str", "list", "bad", "none"])
def test_a_malformed_flag_is_lowered_not_crashed_on(tmp_path: Path, targeting: Any) -> None:
    router = flagd.FlagdRouter("flags", tmp_path / "flags.json")
    router.write({ROUTE: state(10)})
    document = json.loads((tmp_path / "flags.json").read_text())
    document["flags"][ROUTE]["targeting"] = targeting
    (tmp_path / "flags.json").write_text(json.dumps(document))
    live = base.apply(router, {ROUTE: state(0)}).state(ROUTE)
    assert live.weight(C) == 0 and not live.others


# -- cohorts, evaluated by both of flagd's evaluators ------------------------------------------

#: A request's evaluation-context attributes, by user (cycled): internal users, a beta and a trial tenant
#: (one of them internal too: the first cohort listed wins), a tier no cohort lists, and no attribute.
ATTRIBUTES: tuple[dict[str, str], ...] = (
    {"user_group": "internal"},
    {"tenant_tier": "beta"},
    {"tenant_tier": "trial", "user_group": "internal"},
    {"tenant_tier": "gold"},
    {},
)
Evaluate = Callable[[list[str]], list[str]]


def attributes(user: str) -> dict[str, str]:
    return ATTRIBUTES[int(user.removeprefix("user-")) % len(ATTRIBUTES)]


@pytest.fixture(params=["python", "javascript"])
def evaluate(request: pytest.FixtureRequest, flags_file: Path, reader: Callable[[], OpenFeatureClient]) -> Evaluate:
    """The variant each user's request gets from the flag file, each call with a fresh evaluator: the
    Python in-process provider (through OpenFeature, as an application calls it) or the JavaScript
    flagd core. Both are flagd's own; they bucket a user differently (each its own hash of the same
    key), so what they must agree on is each request's split, not each user's variant."""
    if request.param == "python":

        def python(users: list[str]) -> list[str]:
            client = reader()
            out = []
            for user in users:
                details = client.get_object_details(ROUTE, {}, EvaluationContext(user, attributes(user)))
                assert details.error_code is None, details
                out.append(str(details.variant))
            return out

        return python

    def javascript(users: list[str]) -> list[str]:
        contexts = [{"targetingKey": user, **attributes(user)} for user in users]
        document = json.loads(flags_file.read_text("utf-8"))
        answers = run_js("flagd_eval.js", {"document": document, "flag": ROUTE, "contexts": contexts})
        assert all(isinstance(a, str) for a in answers), [a for a in answers if not isinstance(a, str)][:3]
        return [str(a) for a in answers]

    return javascript


def within_binomial(hits: int, n: int, share: float) -> bool:
    """`hits` of `n` is within 4 standard deviations of a binomial with this share."""
    return abs(hits - n * share) <= 4 * (n * share * (1 - share)) ** 0.5


@pytest.mark.slow
def test_each_request_gets_its_cohorts_split(flags_file: Path, evaluate: Evaluate) -> None:
    desired = state(5, cohorts=(INTERNAL, BETA))
    base.apply(flagd.FlagdRouter("flags", flags_file), {ROUTE: desired}).state(ROUTE)
    got = dict(zip(USERS, evaluate(USERS), strict=True))
    for group in ATTRIBUTES:
        users = [u for u in USERS if attributes(u) == group]
        share = desired.canary_for(group) / 100  # the core's own rule: the first cohort matched, else everyone's
        counts = collections.Counter(got[u] for u in users)
        assert set(counts) == {S, C}, (group, counts)
        assert within_binomial(counts[C], len(users), share), (group, share, counts)
    assert evaluate(USERS) == list(got.values())  # another evaluator: the same targetingKey, the same variant


@pytest.mark.slow
def test_a_canary_user_stays_one_as_cohorts_widen_and_give_way(flags_file: Path, evaluate: Evaluate) -> None:
    """Through a ramp that opens the beta cohort, then internal, widens them, and gives way to everyone:
    nobody on the canary at one step is off it at the next."""
    router = flagd.FlagdRouter("flags", flags_file)
    users = USERS[:3000]
    ramp = [
        state(0, cohorts=(replace(BETA, canary=10),)),
        state(0, cohorts=(INTERNAL, replace(BETA, canary=10))),
        state(5, cohorts=(INTERNAL, BETA)),
        state(25, cohorts=(INTERNAL, BETA)),  # beta gives way to everyone: 25 is no more than everyone's
        state(60, cohorts=(replace(INTERNAL, canary=60),)),  # and so does internal, at everyone's weight
    ]
    assert [len(s.cohorts) for s in ramp] == [1, 2, 2, 1, 0]
    before: set[str] = set()
    for desired in ramp:
        base.apply(router, {ROUTE: desired}).state(ROUTE)
        now = {u for u, v in zip(users, evaluate(users), strict=True) if v == C}
        assert before <= now, (desired.describe(), sorted(before - now)[:5])
        before = now


@pytest.mark.slow
def test_an_unmanaged_variant_lives_in_everyones_split_only(flags_file: Path, evaluate: Evaluate) -> None:
    """A hand-added variant takes a share of everyone's requests, never a cohort's; lowering the canary
    (part way, then out) never moves a user onto the canary, and the hand-added variant keeps its users."""
    router = flagd.FlagdRouter("flags", flags_file)
    beta = replace(BETA, canary=10)
    base.apply(router, {ROUTE: state(5, cohorts=(INTERNAL, beta))}).state(ROUTE)
    _hand_added_hotfix(flags_file)
    live = router.read([ROUTE])[ROUTE]
    assert isinstance(live, traffic.RouteState)
    assert dict(live.others) == {"hotfix": 20} and live.cohorts == (INTERNAL, beta)
    everyone = {u for u in USERS if not any(c.matches(attributes(u)) for c in live.cohorts)}
    first = dict(zip(USERS, evaluate(USERS), strict=True))
    hotfix = {u for u, v in first.items() if v == "hotfix"}
    assert hotfix <= everyone  # a cohort's request never gets it
    assert within_binomial(len(hotfix), len(everyone), 0.2)
    canary = {u for u, v in first.items() if v == C}
    for down in (live.lowered(5), live.lowered()):  # the cohorts give way to everyone's 5%, then a rollback
        assert base.apply(router, {ROUTE: down}).state(ROUTE).same_traffic(down) and not down.cohorts
        now = dict(zip(USERS, evaluate(USERS), strict=True))
        assert {u for u, v in now.items() if v == C} <= canary, down.describe()  # nobody new on the canary
        assert {u for u in everyone if now[u] == "hotfix"} == hotfix  # the same users keep it
    assert C not in now.values()


def test_a_fractional_without_a_bucketing_expression_reads_every_entry(tmp_path: Path) -> None:
    """flagd buckets by flag key and targeting key when the first argument is already an entry: a flag
    written so by hand is read whole (reading its first entry as the expression hid 50% of canary)."""
    path = tmp_path / "flags.json"
    variants = {"stable": {"model": "acme/a"}, "canary": {"model": "acme/b"}, "hotfix": {"model": "acme/h"}}
    flag = {"state": "ENABLED", "defaultVariant": "stable", "variants": variants}
    flag["targeting"] = {"fractional": [["stable", 40], ["canary", 50], ["hotfix", 10]]}
    path.write_text(json.dumps({"flags": {ROUTE: flag}}))
    router = flagd.FlagdRouter("flags", path)
    live = router.read([ROUTE])[ROUTE]
    assert isinstance(live, traffic.RouteState)
    assert (dict(live.weights), dict(live.others)) == ({"stable": 40, "canary": 50}, {"hotfix": 10})
    down = base.apply(router, {ROUTE: live.lowered()}).state(ROUTE)
    assert down.weight(C) == 0 and dict(down.others) == {"hotfix": 10}

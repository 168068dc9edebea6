"""GitHub's request budget through the real forge, against the stand-in that enforces it: conditional
reads are free, a burst of mutations is paced and never trips the secondary limit, a secondary limit
pauses the identity (nothing is sent until it ends), and controllers sharing an identity take 1/k each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller import errors, settings, spec
from controller.forge import base, budget, github
from tests.helpers import github_standin as standin_mod
from tests.helpers.fake_time import FakeTime

TOKEN = standin_mod.TOKEN
BRANCH = "rollout/support-bot/advance-2-3f2a9c1e04ab"
PACE = 0.05  # seconds between mutations, on both sides: GitHub's 1 s, made small


def change(n: int) -> base.Change:
    return base.Change(
        branch=f"rollout/r{n}/advance-1-abc",
        title=f"rollout(r{n}): advance",
        body="evidence",
        message="advance",
        files={f"rollouts/r{n}/rollout.yaml": b"status: {step: 1}\n"},
        labels=("rollout",),
    )


@pytest.fixture
def paced() -> Iterator[standin_mod.StandIn]:
    server = standin_mod.StandIn(token=TOKEN, limits=standin_mod.Limits(mutation_interval=PACE)).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_second_look_at_a_quiet_repository_costs_nothing(
    forge: github.GithubForge, standin: standin_mod.StandIn
) -> None:
    pr = forge.propose(change(1), base="main")
    standin.review(pr.number, login="alice")
    first = forge.list(prefix="rollout/", state=base.PRState.OPEN)
    found = forge.find(pr.branch)
    assert first[0].approved and found == first[0]
    before, sent = standin.counted(TOKEN), len(standin.records)
    assert forge.list(prefix="rollout/", state=base.PRState.OPEN) == first
    assert forge.find(pr.branch) == found
    assert standin.counted(TOKEN) == before  # all 304s
    assert {r.status for r in standin.records[sent:]} == {304}
    assert "pulls/list-reviews" not in [r.op_id for r in standin.records[sent:]]  # nothing moved: not asked
    assert standin.counts[TOKEN]["not_modified"] > 0
    standin.review(pr.number, login="bob", state="CHANGES_REQUESTED")  # moves updated_at: asked again
    [again] = forge.list(prefix="rollout/", state=base.PRState.OPEN)
    assert not again.approved
    assert standin.violations == []


def test_a_burst_of_mutations_is_paced_and_never_trips_the_secondary_limit(paced: standin_mod.StandIn) -> None:
    forge = github.GithubForge(
        "acme/rollouts",
        token=TOKEN,
        api_url=paced.api_url,
        limits=settings.GithubBudget(mutation_interval=PACE),
    )
    for n in range(3):
        pr = forge.propose(change(n), base="main")
        forge.comment(pr.number, "evidence", key="evidence")
    assert paced.counts[TOKEN]["mutation"] >= 15
    assert paced.counts[TOKEN]["secondary"] == 0
    assert paced.violations == []


def test_an_unpaced_burst_does_trip_it(paced: standin_mod.StandIn) -> None:
    """The stand-in's limit is real: the same burst without pacing gets GitHub's secondary-limit answer."""
    forge = github.GithubForge(
        "acme/rollouts",
        token=TOKEN,
        api_url=paced.api_url,
        limits=settings.GithubBudget(mutation_interval=0.0),
        retry=github.RetryPolicy(attempts=1),
    )
    with pytest.raises(errors.ForgeRateLimited, match="rate limited; retry after 60s") as caught:
        for n in range(3):
            forge.propose(change(n), base="main")
    assert caught.value.retryable
    assert paced.counts[TOKEN]["secondary"] == 1


def test_a_secondary_limit_pauses_the_identity_until_retry_after(
    forge: github.GithubForge, standin: standin_mod.StandIn, time: FakeTime
) -> None:
    forge.propose(change(1), base="main")
    listed = forge.list(prefix="rollout/")
    standin.fail_next(403, headers={"Retry-After": "120"}, op_id="issues/create-comment", message=standin_mod.SECONDARY)
    with pytest.raises(errors.ForgeRateLimited, match="rate limited; retry after 120s") as caught:
        forge.comment(listed[0].number, "evidence", key="evidence")
    assert caught.value.retryable and time.slept == []  # longer than the retry's max_wait: not waited for here
    sent = len(standin.records)
    with pytest.raises(errors.ForgeRateLimited, match=r"paused for 120s more") as caught:
        forge.propose(change(2), base="main")
    assert caught.value.retry_after == 120
    with pytest.raises(errors.ForgeRateLimited, match="paused"):
        forge.list(prefix="rollout/")  # reads too: a kept listing may predate a PR another process opened
    assert len(standin.records) == sent, "nothing is sent while the identity is paused"
    time.now += 120
    forge.comment(listed[0].number, "evidence", key="evidence")
    assert len(standin.comments) == 1
    assert standin.violations == []


def test_a_spent_hourly_budget_reported_by_github_pauses_until_its_reset(
    forge: github.GithubForge, standin: standin_mod.StandIn, time: FakeTime
) -> None:
    reset = str(int(time.now) + 600)
    standin.fail_next(
        403, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}, message="API rate limit exceeded"
    )
    with pytest.raises(errors.ForgeRateLimited, match="retry after 600s"):
        forge.find(BRANCH)
    assert forge.budget.paused_for() == 600
    time.now += 600
    assert forge.find(BRANCH) is None


def test_two_controllers_sharing_an_identity_take_half_each() -> None:
    # GitHub would allow 30; the identity's budget is set at 20, so two members take 10 each
    server = standin_mod.StandIn(token=TOKEN, limits=standin_mod.Limits(total_per_hour=30)).start()
    try:
        limits = settings.GithubBudget(total_per_hour=20)
        forges = [
            github.GithubForge(
                "acme/rollouts",
                token=TOKEN,
                api_url=server.api_url,
                limits=limits,
                share=lambda: 2,
            )
            for _ in range(2)
        ]
        done = []
        for forge in forges:
            with pytest.raises(errors.ForgeRateLimited, match=r"share \(1/2\) of the read budget is spent"):
                for n in range(100):
                    forge.find(f"rollout/r{n}/advance-1")  # a new question each time: no 304 to fall back on
            done.append(forge.budget.spent[budget.Kind.READ])
        assert done == [10, 10]
        assert server.counted(TOKEN) == 20 and server.counts[TOKEN]["primary"] == 0
    finally:
        server.stop()


def test_forges_of_one_identity_in_one_process_share_its_budget() -> None:
    registry = budget.Registry(settings.GithubBudget(total_per_hour=4))
    config = {"type": "github", "repository": "acme/rollouts", "apiUrl": "http://127.0.0.1:9/api/v3"}
    parsed = spec.GithubForgeConfig.model_validate(config)
    one = github.GithubForge.from_config(parsed, env={"GITHUB_TOKEN": TOKEN}, budgets=registry)
    two = github.GithubForge.from_config(parsed, env={"GITHUB_TOKEN": TOKEN}, budgets=registry)
    other = github.GithubForge.from_config(parsed, env={"GITHUB_TOKEN": TOKEN[::-1]}, budgets=registry)
    assert one.budget is two.budget and other.budget is not one.budget
    assert all(TOKEN not in key and TOKEN[::-1] not in key for key in registry._budgets)

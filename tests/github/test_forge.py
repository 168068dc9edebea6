"""The GitHub forge against the stand-in: every request and response checked against GitHub's
OpenAPI description, so a test fails on any contract violation as well as on wrong behaviour."""

from __future__ import annotations

import logging
import re
import socket

import github3
import pytest
import requests

from controller import errors, spec
from controller.forge import base, github
from tests.helpers import github_actions, github_openapi
from tests.helpers import github_standin as standin_mod

BRANCH = "rollout/support-bot/advance-2-3f2a9c1e04ab"
EVIDENCE = """Advance support-bot to step 2 (weight 5%).

| gate | stable | canary | verdict |
|---|---|---|---|
| error_rate | 0.41% | 0.38% | PASS |
| latency_p95 | 1.82s | 1.79s | PASS |
"""


def change(
    *, branch: str = BRANCH, body: str = EVIDENCE, step: int = 2, labels: tuple[str, ...] = ("rollout",)
) -> base.Change:
    return base.Change(
        branch=branch,
        title=f"rollout(support-bot): advance to step {step}",
        body=body,
        message=f"rollout(support-bot): advance to step {step}",
        files={"rollouts/support-bot/rollout.yaml": f"status: {{step: {step}}}\n".encode()},
        labels=labels,
    )


def test_promotion_then_rollback_end_to_end(forge: github.GithubForge, standin: standin_mod.StandIn) -> None:
    pr = forge.propose(change(), base="main")
    assert (pr.state, pr.branch, pr.base, pr.labels, pr.approved) == (
        base.PRState.OPEN,
        BRANCH,
        "main",
        ("rollout",),
        False,
    )
    assert standin.read_file(BRANCH, "rollouts/support-bot/rollout.yaml") == b"status: {step: 2}\n"
    forge.set_check(pr.number, state=base.CheckState.SUCCESS, summary="4 gates PASS", context="rollout/gates")
    forge.comment(pr.number, EVIDENCE, key="evidence")

    # a second tick: same branch, fresher evidence -> the same PR, updated in place
    before = len(standin.records)
    again = forge.propose(change(body=EVIDENCE + "\n(refreshed)"), base="main")
    git_writes = [r.op_id for r in standin.records[before:] if r.op_id.startswith("git/") and r.method != "GET"]
    assert git_writes == []  # same files on the same base: nothing new is written to git
    forge.comment(pr.number, EVIDENCE + "\n(refreshed)", key="evidence")
    assert again.number == pr.number
    assert again.head_sha == pr.head_sha  # same files: no new commit, the status stays attached
    assert again.body.endswith("(refreshed)")
    assert len(standin.pulls) == 1
    assert [c["body"].endswith("(refreshed)") for c in standin.comments.values()] == [True]
    assert [s["state"] for s in standin.statuses[pr.head_sha]] == ["success"]

    standin.review(pr.number, login="alice", state="APPROVED")
    found = forge.find(BRANCH)
    assert found is not None and found.approved

    merged = forge.merge(pr.number, message="rollout(support-bot): advance to step 2\n\nMerged by the controller.")
    assert merged.state is base.PRState.MERGED
    assert forge.merge(pr.number, message="again") == merged  # a retried tick merges nothing twice
    merge_commit = standin.commits[merged.merge_sha]
    assert merge_commit["message"].startswith(f"rollout(support-bot): advance to step 2 (#{pr.number})")
    assert len(merge_commit["parents"]) == 2
    assert merged.merge_sha == standin.refs["heads/main"]
    assert f"heads/{BRANCH}" not in standin.refs, "a merged branch is deleted"
    assert merged.head_sha == pr.head_sha  # the PR still names the commit it merged
    assert standin.read_file("main", "rollouts/support-bot/rollout.yaml") == b"status: {step: 2}\n"
    found = forge.find(BRANCH)
    assert found is not None and found.state is base.PRState.MERGED

    rollback = forge.propose(
        change(branch="rollout/support-bot/rollback-3f2a9c1e04ab", step=0, labels=("rollback",)), base="main"
    )
    closed = forge.close(rollback.number, comment="superseded by a newer revision")
    assert forge.close(rollback.number, comment="superseded by a newer revision") == closed
    assert closed.state is base.PRState.CLOSED
    assert [c["body"] for c in standin.comments.values() if c["issue"] == rollback.number] == [
        f"{github.marker('close')}\nsuperseded by a newer revision"
    ]
    listed = forge.list(prefix="rollout/support-bot/")
    assert [p.number for p in listed] == [rollback.number, pr.number]
    assert [p.number for p in forge.list(prefix="rollout/", state=base.PRState.MERGED)] == [pr.number]
    assert forge.find("rollout/nothing-here") is None
    assert standin.violations == []


def test_changed_files_move_the_branch_without_a_second_pr(
    forge: github.GithubForge, standin: standin_mod.StandIn
) -> None:
    first = forge.propose(change(step=2), base="main")
    second = forge.propose(change(step=3), base="main")
    assert (second.number, len(standin.pulls)) == (first.number, 1)
    assert second.head_sha != first.head_sha
    assert standin.read_file(BRANCH, "rollouts/support-bot/rollout.yaml") == b"status: {step: 3}\n"
    assert standin.violations == []


def test_changes_requested_is_not_approved(forge: github.GithubForge, standin: standin_mod.StandIn) -> None:
    pr = forge.propose(change(), base="main")
    standin.review(pr.number, login="alice", state="APPROVED")
    standin.review(pr.number, login="bob", state="CHANGES_REQUESTED")
    found = forge.find(BRANCH)
    assert found is not None and not found.approved
    assert standin.violations == []


def test_a_marker_in_someone_elses_comment_is_never_edited(
    forge: github.GithubForge, standin: standin_mod.StandIn
) -> None:
    pr = forge.propose(change(), base="main")
    forge.comment(pr.number, "ours", key="plan")
    [ours_id] = list(standin.comments)
    planted = f"{github.marker('plan')}\nplanted by an outsider"
    standin.comments[1] = {"issue": pr.number, "body": planted, "user": "mallory"}  # listed before ours
    forge.comment(pr.number, "updated", key="plan")
    assert standin.comments[1]["body"] == planted  # not the bot's: left alone
    assert standin.comments[ours_id]["body"].endswith("updated") and len(standin.comments) == 2
    assert standin.violations == []


def test_every_page_is_read(standin: standin_mod.StandIn, forge: github.GithubForge) -> None:
    standin.max_per_page = 2
    numbers = [forge.propose(change(branch=f"rollout/r{i}/advance-1"), base="main").number for i in range(5)]
    pr = numbers[0]
    for i in range(4):
        forge.comment(pr, f"note {i}", key=f"other-{i}")
    forge.comment(pr, "first", key="plan")  # the fifth comment: on page 3
    forge.comment(pr, "second", key="plan")
    assert [p.number for p in forge.list(prefix="rollout/")] == sorted(numbers, reverse=True)
    assert len(standin.comments) == 5
    assert any(c["body"].endswith("second") for c in standin.comments.values())
    assert any("page=3" in r.path for r in standin.records)
    assert standin.violations == []


def test_labels_use_the_documented_form(forge: github.GithubForge, standin: standin_mod.StandIn) -> None:
    pr = forge.propose(change(labels=()), base="main")
    forge.add_labels(pr.number, ("rollout", "promotion"))
    bodies = [r.body for r in standin.records if r.op_id == "issues/add-labels"]
    assert bodies == [{"labels": ["rollout", "promotion"]}]
    assert standin.violations == []


def test_github3_bare_label_array_is_a_violation(forge: github.GithubForge, standin: standin_mod.StandIn) -> None:
    """The known trap, and proof that the stand-in catches request-body violations: github3's
    `Issue.add_labels(*names)` posts the names as a bare JSON array, through this same session."""
    pr = forge.propose(change(labels=()), base="main")
    gh = github3.GitHubEnterprise(standin.url + "/", token=standin_mod.TOKEN)
    gh.session.post(f"{standin.api_url}/repos/acme/rollouts/issues/{pr.number}/labels", json=["rollout"])
    assert len(standin.violations) == 1 and "issues/add-labels): request body" in standin.violations[0]


@pytest.mark.parametrize(
    ("method", "path", "body", "expect"),
    [
        ("GET", "/repos/acme/rollouts/branches", None, "undocumented route"),
        ("GET", "/repos/acme/rollouts/pulls?state=merged", None, "query parameter 'state'"),
        ("GET", "/repos/acme/rollouts/pulls?foo=1", None, "undocumented query parameter 'foo'"),
        ("POST", "/repos/acme/rollouts/statuses/abc", {"state": "green"}, "request body"),
        ("POST", "/repos/acme/rollouts/pulls", {"title": "x"}, "'head' is a required property"),
        ("PUT", "/repos/acme/rollouts/pulls/1/merge", {"merge_method": "octopus"}, "request body"),
    ],
    ids=["undocumented-route", "bad-enum", "unknown-param", "bad-status-state", "missing-field", "bad-merge-method"],
)
def test_contract_violations_are_caught(
    standin: standin_mod.StandIn, method: str, path: str, body: object, expect: str
) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"token {standin_mod.TOKEN}"
    response = session.request(method, standin.api_url + path, json=body)
    assert response.status_code in (404, 422)
    assert standin.violations and all(expect.split(":")[0] in v or expect in v for v in standin.violations[:1])
    assert any(expect in v for v in standin.violations), standin.violations


@pytest.mark.parametrize(
    ("op_id", "status", "body", "expect"),
    [
        ("repos/create-commit-status", 201, {"state": "success"}, "'url' is a required property"),
        ("pulls/merge", 200, {"sha": "a", "merged": "yes", "message": "m"}, "'yes' is not of type 'boolean'"),
        ("pulls/list", 418, {}, "undocumented status"),
    ],
    ids=["missing-field", "wrong-type", "undocumented-status"],
)
def test_response_violations_are_caught(op_id: str, status: int, body: object, expect: str) -> None:
    contract = github_openapi.contract()
    op = next(o for o in contract.operations if o.op_id == op_id)
    found = contract.check_response(op, status=status, body=body)
    assert found and expect in found[0], found


@pytest.mark.parametrize(
    ("status", "headers", "wait"),
    [
        (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1000005"}, 5.0),
        (429, {"Retry-After": "7"}, 7.0),
        (403, {"Retry-After": "3"}, 3.0),
    ],
    ids=["primary-403-reset", "429-retry-after", "secondary-403"],
)
def test_rate_limits_back_off_then_succeed(
    forge: github.GithubForge,
    standin: standin_mod.StandIn,
    waits: list[float],
    status: int,
    headers: dict[str, str],
    wait: float,
) -> None:
    standin.fail_next(status, headers=headers, op_id="repos/get", message="API rate limit exceeded")
    pr = forge.propose(change(), base="main")
    assert pr.number == 1 and waits == [wait]
    assert standin.violations == []


def test_a_long_rate_limit_is_a_retryable_error(
    forge: github.GithubForge, standin: standin_mod.StandIn, waits: list[float]
) -> None:
    standin.fail_next(
        403, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1003600"}, message="API rate limit exceeded"
    )
    with pytest.raises(errors.ForgeUnavailable, match="rate limited; retry after 3600s") as caught:
        forge.find(BRANCH)
    assert caught.value.retryable and waits == []


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (500, errors.ForgeUnavailable, True),
        (502, errors.ForgeUnavailable, True),
        (404, errors.ForgeError, False),
        (422, errors.ForgeError, False),
        (403, errors.ForgeError, False),
    ],
    ids=["500", "502", "404", "422", "403-not-rate-limit"],
)
def test_errors_are_translated(
    forge: github.GithubForge, standin: standin_mod.StandIn, status: int, kind: type[errors.ForgeError], retryable: bool
) -> None:
    standin.fail_next(status, op_id="pulls/list", message="boom")
    with pytest.raises(kind) as caught:
        forge.find(BRANCH)
    assert type(caught.value).__module__ == "controller.errors"
    assert caught.value.retryable is retryable
    assert "find the pull request" in str(caught.value) and f"HTTP {status}" in str(caught.value)


def test_unreachable_github_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    forge = github.GithubForge(
        "acme/rollouts", token=standin_mod.TOKEN, api_url=f"http://127.0.0.1:{port}/api/v3", timeout=2
    )
    with pytest.raises(errors.ForgeUnavailable, match="cannot reach"):
        forge.list()


def test_the_token_never_leaks(standin: standin_mod.StandIn, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = standin_mod.TOKEN[::-1]
    forge = github.GithubForge("acme/rollouts", token=wrong, api_url=standin.api_url)
    with pytest.raises(errors.ForgeError) as caught:
        forge.propose(change(), base="main")
    good = github.GithubForge("acme/rollouts", token=standin_mod.TOKEN, api_url=standin.api_url)
    standin.fail_next(500, op_id="pulls/create")
    with pytest.raises(errors.ForgeUnavailable) as caught_500:
        good.propose(change(), base="main")
    seen = " ".join(
        [
            str(caught.value),
            repr(caught.value),
            str(caught_500.value),
            repr(caught_500.value),
            repr(forge),
            repr(good),
            caplog.text,
        ]
    )
    assert "HTTP 401" in str(caught.value)
    assert wrong not in seen and standin_mod.TOKEN not in seen
    assert "token" in repr(good)  # says how it authenticates, never with what


def test_needs_one_way_to_authenticate() -> None:
    with pytest.raises(errors.ForgeError, match="exactly one"):
        github.GithubForge("acme/rollouts")


def test_the_subset_covers_what_the_forge_uses() -> None:
    from tests.github import extract_openapi

    contract = github_openapi.contract()
    assert contract.source.startswith("@octokit/openapi@")
    assert {op.op_id for op in contract.operations} == set(extract_openapi.OPERATIONS)


@pytest.fixture(scope="module")
def app_key() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a throwaway GitHub App key."""
    return _rsa_key()


def _rsa_key() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def test_github_app_installation_auth(app_key: tuple[bytes, bytes]) -> None:
    private, public = app_key
    server = standin_mod.StandIn(app=(42, public)).start()
    try:
        config = spec.GithubForgeConfig.model_validate(
            {
                "type": "github",
                "repository": "acme/rollouts",
                "apiUrl": server.api_url,
                "app": {"appId": 42, "installationId": 7},
            }
        )
        forge = github.GithubForge.from_config(config, env={"GITHUB_APP_PRIVATE_KEY": private.decode()})
        pr = forge.propose(change(), base="main")
        assert pr.number == 1
        assert server.ops()[:2] == ["apps/create-installation-access-token", "repos/get"]
        assert "app 42" in repr(forge) and "PRIVATE KEY" not in repr(forge)
        assert server.violations == []
    finally:
        server.stop()


def test_an_expired_installation_token_is_renewed(app_key: tuple[bytes, bytes]) -> None:
    private, public = app_key
    server = standin_mod.StandIn(app=(42, public), expired_tokens=1).start()
    try:
        forge = github.GithubForge("acme/rollouts", app=github.AppAuth(42, 7, private), api_url=server.api_url)
        assert forge.find(BRANCH) is None
        assert server.ops().count("apps/create-installation-access-token") == 2
        assert server.violations == []
    finally:
        server.stop()


def test_a_wrong_app_key_is_a_forge_error(app_key: tuple[bytes, bytes]) -> None:
    other, _ = _rsa_key()
    server = standin_mod.StandIn(app=(42, app_key[1])).start()
    try:
        forge = github.GithubForge("acme/rollouts", app=github.AppAuth(42, 7, other), api_url=server.api_url)
        with pytest.raises(errors.ForgeError, match="HTTP 401") as caught:
            forge.find(BRANCH)
        assert "PRIVATE KEY" not in str(caught.value) and "PRIVATE KEY" not in repr(forge)
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("config", "env", "expect"),
    [
        ({}, {}, r"\$GITHUB_TOKEN is not set"),
        ({"tokenEnv": "BOT_TOKEN"}, {"GITHUB_TOKEN": "x"}, r"\$BOT_TOKEN is not set"),
        ({"app": {"appId": 1, "installationId": 2}}, {"GITHUB_TOKEN": "x"}, r"\$GITHUB_APP_PRIVATE_KEY is not set"),
    ],
    ids=["no-token", "custom-env", "app-without-key"],
)
def test_from_config_names_the_missing_secret(config: dict[str, object], env: dict[str, str], expect: str) -> None:
    parsed = spec.GithubForgeConfig.model_validate({"type": "github", "repository": "acme/rollouts", **config})
    with pytest.raises(errors.ForgeError, match=expect):
        github.GithubForge.from_config(parsed, env=env)


@pytest.mark.parametrize(
    ("status", "headers", "expect"),
    [
        (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "110"}, 10.0),
        (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "90"}, 0.0),
        (403, {"X-RateLimit-Remaining": "12"}, None),
        (429, {}, 60.0),
        (403, {"_body": "You have exceeded a secondary rate limit"}, 60.0),
        (403, {"Retry-After": "soon"}, 60.0),
        (500, {"Retry-After": "5"}, None),
    ],
    ids=[
        "reset-ahead",
        "reset-passed",
        "plain-forbidden",
        "429-no-header",
        "secondary-by-message",
        "bad-retry-after",
        "not-a-limit",
    ],
)
def test_rate_limit_wait(status: int, headers: dict[str, str], expect: float | None) -> None:
    response = requests.Response()
    response.status_code = status
    response._content = headers.pop("_body", "{}").encode()
    response.headers.update(headers)
    assert github.rate_limit_wait(response, now=100.0) == expect


def test_an_incomplete_response_is_a_forge_error(forge: github.GithubForge, standin: standin_mod.StandIn) -> None:
    standin.fail_next(200, op_id="repos/get", message="not a repository")
    with pytest.raises(errors.ForgeError, match="unexpected response"):
        forge.find(BRANCH)


def test_a_long_summary_is_cut_to_what_github_accepts(forge: github.GithubForge, standin: standin_mod.StandIn) -> None:
    pr = forge.propose(change(), base="main")
    forge.set_check(pr.number, state=base.CheckState.FAILURE, summary="latency_p95 FAIL " * 20, context="rollout/gates")
    (status,) = standin.statuses[pr.head_sha]
    assert status["state"] == "failure" and len(status["description"]) == github.DESCRIPTION_LIMIT
    assert status["description"].endswith("…") and status["context"] == "rollout/gates"
    assert standin.violations == []


def test_a_merge_waits_for_the_required_checks(forge: github.GithubForge, standin: standin_mod.StandIn) -> None:
    """Branch protection on the stand-in, as GitHub answers: 405 while a required check is missing,
    pending or failing; the merge goes through once the latest status of each is success."""
    answer = github_actions.protect(standin.api_url, standin_mod.TOKEN, contexts=("rollout-checks", "test"))
    assert answer["required_status_checks"]["contexts"] == ["rollout-checks", "test"]
    pr = forge.propose(change(), base="main")

    def refused(message: str) -> None:
        with pytest.raises(errors.ForgeError, match=re.escape(f"HTTP 405: {message}")):
            forge.merge(pr.number, message="merge")

    refused('Required status check "rollout-checks" is expected.')
    forge.set_check(pr.number, state=base.CheckState.SUCCESS, summary="4 gates PASS", context="rollout/gates")
    refused('Required status check "rollout-checks" is expected.')  # not a required context
    forge.set_check(pr.number, state=base.CheckState.PENDING, summary="running", context="rollout-checks")
    refused('Required status check "rollout-checks" is expected.')
    github_actions.report(standin.api_url, standin_mod.TOKEN, pr.head_sha, passed=False, summary="gates FAIL")
    refused('Required status check "rollout-checks" is failing.')
    github_actions.report(standin.api_url, standin_mod.TOKEN, pr.head_sha, passed=True, summary="gates PASS")
    refused('Required status check "test" is expected.')
    github_actions.report(standin.api_url, standin_mod.TOKEN, pr.head_sha, passed=True, summary="ok", context="test")
    assert forge.merge(pr.number, message="merge").state is base.PRState.MERGED
    assert standin.read_file("main", "rollouts/support-bot/rollout.yaml") == b"status: {step: 2}\n"
    assert standin.violations == []


def test_a_status_on_an_older_head_does_not_count(forge: github.GithubForge, standin: standin_mod.StandIn) -> None:
    github_actions.protect(standin.api_url, standin_mod.TOKEN)
    pr = forge.propose(change(), base="main")
    github_actions.report(standin.api_url, standin_mod.TOKEN, pr.head_sha, passed=True, summary="ok")
    moved = forge.propose(change(step=3), base="main")  # new evidence: the branch moves, the check runs again
    assert moved.head_sha != pr.head_sha
    with pytest.raises(errors.ForgeError, match=re.escape('Required status check "rollout-checks" is expected.')):
        forge.merge(pr.number, message="merge")
    assert standin.violations == []

"""The GitHub forge: pull requests, sticky comments, labels and commit statuses through github3.py.

Built by the cli from `spec.GithubForgeConfig` and driven by the reconciler. It translates between our
types and GitHub's REST API, and GitHub's failures into `errors.ForgeError`; it decides nothing.
Every request goes through the identity's `budget.Budget` (mutations paced, none sent while paused),
and every read is conditional (`If-None-Match`): a `304` reuses the answer kept and costs nothing.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import github3
import github3.exceptions
import github3.session
import requests
import requests.structures

from controller import errors, settings, spec
from controller.forge import base, budget

log = logging.getLogger(__name__)

T = TypeVar("T")

PUBLIC_API = "https://api.github.com"
DESCRIPTION_LIMIT = 140  # GitHub rejects a longer commit status description
MARKER = "<!-- rollout:{key} -->"
LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")  # a GitHub user's login (a bot's ends in [bot])


@dataclass(frozen=True)
class AppAuth:
    """A GitHub App installation: commits it makes through the API are signed by GitHub."""

    app_id: int
    installation_id: int
    private_key: bytes = field(repr=False)  # PEM


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait on a rate limit before giving up with a retryable error."""

    attempts: int = settings.Retries.github_rate_limit_attempts
    max_wait: float = settings.Retries.github_rate_limit_max_wait  # seconds; a later reset is left to the next tick
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time


def marker(key: str) -> str:
    """The hidden line that identifies our sticky comment for `key`."""
    return MARKER.format(key=key)


class GithubForge:
    """`forge.base.Forge` on one GitHub repository. The token lives only inside the github3 session."""

    def __init__(
        self,
        repository: str,
        *,
        token: str | None = None,
        app: AppAuth | None = None,
        api_url: str = PUBLIC_API,
        retry: RetryPolicy | None = None,
        timeout: float = settings.Timeouts.github,
        share: Callable[[], int] = lambda: 1,
        limits: settings.GithubBudget | None = None,
        spending: budget.Budget | None = None,
    ) -> None:
        """`share()` is the number of live controllers using this identity (this one's share is 1/k);
        `spending`, when given, is the identity's budget shared with other forges of this process (its
        own share then counts), else this forge keeps its own, on `limits` and the retry's clock."""
        owner, _, name = repository.partition("/")
        if not owner or not name:
            raise errors.ForgeError(f"github repository {repository!r}: expected owner/name")
        if (token is None) == (app is None):
            raise errors.ForgeError(f"github repository {repository!r}: give exactly one of a token or an app")
        self.repository = repository
        self.owner, self.name = owner, name
        self.api_url = api_url.rstrip("/")
        self._retry = retry or RetryPolicy()
        self._app = app
        limits = limits or settings.GithubBudget()
        if spending is None:
            spending = budget.Budget(
                limits, app=app is not None, share=share, clock=self._retry.clock, sleep=self._retry.sleep
            )
        self.budget = spending
        self._gate = Gate(self.budget, keep=limits.etags)
        self._gh = _client(self.api_url, timeout=timeout)
        self._gh.session.gate = self._gate
        if token is not None:
            self._gh.login(token=token)
        self._repo: Any = None
        self._reviews: dict[int, tuple[str, str, bool]] = {}  # PR -> (updated_at, head sha, approved) last seen

    @classmethod
    def from_config(
        cls,
        config: spec.GithubForgeConfig,
        *,
        env: Mapping[str, str],
        knobs: settings.Settings | None = None,
        share: Callable[[], int] = lambda: 1,
        budgets: budget.Registry | None = None,
    ) -> GithubForge:
        """The forge that `rollouts/controller.yaml` names; `env` is where its secret lives (the cli
        passes os.environ). A missing secret is an error that names the variable, never its value.
        `knobs` gives the request timeout and the rate-limit retry policy; `share` the number of live
        controllers using the identity; `budgets`, when given, the process's budgets by identity, so
        every repository on one token or installation draws on one budget."""
        knobs = knobs or settings.Settings()
        tuning: dict[str, Any] = {
            "share": share,
            "limits": knobs.github,
            "api_url": config.api_url,
            "timeout": knobs.timeouts.github,
            "retry": RetryPolicy(
                attempts=knobs.retries.github_rate_limit_attempts, max_wait=knobs.retries.github_rate_limit_max_wait
            ),
        }
        if config.app is not None:
            key = env.get(config.app.private_key_env, "")
            if not key:
                raise errors.ForgeError(f"github {config.repository}: ${config.app.private_key_env} is not set")
            app = AppAuth(config.app.app_id, config.app.installation_id, key.encode())
            if budgets is not None:
                identity = f"{config.api_url}|app {app.app_id}/{app.installation_id}"
                tuning["spending"] = budgets.get(identity, app=True, share=share)
            return cls(config.repository, app=app, **tuning)
        token = env.get(config.token_env, "")
        if not token:
            raise errors.ForgeError(f"github {config.repository}: ${config.token_env} is not set")
        if budgets is not None:
            digest = hashlib.sha256(token.encode()).hexdigest()[:16]  # the token itself is never a key
            tuning["spending"] = budgets.get(f"{config.api_url}|token {digest}", share=share)
        return cls(config.repository, token=token, **tuning)

    def __repr__(self) -> str:
        auth = f"app {self._app.app_id}" if self._app else "token"
        return f"GithubForge({self.repository!r}, api_url={self.api_url!r}, auth={auth})"

    # -- reading ---------------------------------------------------------------------------------

    def find(self, branch: str) -> base.PullRequest | None:
        def run() -> base.PullRequest | None:
            for pr in self._repository().pull_requests(state="all", head=f"{self.owner}:{branch}"):
                if pr.head.ref == branch:
                    return self._pull(pr)
            return None

        return self._call(f"find the pull request of branch {branch!r}", run)

    def list(self, *, prefix: str = "", state: base.PRState | None = None) -> list[base.PullRequest]:
        wire = "open" if state is base.PRState.OPEN else "closed" if state else "all"

        def run() -> list[base.PullRequest]:
            found = []
            for pr in self._repository().pull_requests(state=wire, sort="created", direction="desc"):
                if not pr.head.ref.startswith(prefix) or not self._ours(pr):
                    continue  # a fork's branch may be named like ours: it is never one of our PRs
                pull = self._pull(pr)
                if state is None or pull.state is state:
                    found.append(pull)
            return found

        return self._call(f"list pull requests with prefix {prefix!r}", run)

    def get(self, number: int) -> base.PullRequest | None:
        """The PR numbered `number` whose head branch lives in this repository; None when there is none
        (an issue's number) or it is a fork's (its branch may be named like ours: never one of our PRs)."""

        def run() -> base.PullRequest | None:
            pr = self._repository().pull_request(number)
            return self._pull(pr) if pr is not None and self._ours(pr) else None

        return self._call(f"read PR #{number}", run)

    def permission(self, login: str) -> str:
        """`login`'s permission on this repository (GitHub's `permission`: admin, write, read or none;
        maintain reads as write, triage as read); none for a login GitHub does not know or that is no
        user's (a bot's)."""
        if not LOGIN.fullmatch(login):
            return "none"

        def run() -> str:
            response = self._gh.session.get(f"{self._repository().url}/collaborators/{login}/permission")
            if response.status_code == 404:
                return "none"
            if response.status_code != 200:
                raise github3.exceptions.error_for(response)
            return str(response.json().get("permission") or "none")

        return self._call(f"read the permission of @{login}", run)

    # -- writing ---------------------------------------------------------------------------------

    def propose(self, change: base.Change, *, base: str) -> base.PullRequest:
        what = f"propose branch {change.branch!r} onto {base!r}"
        sha = self._call(what, lambda: self._commit(change, base=base))

        pull = self._call(what, lambda: self._open_or_update(change, target=base))
        log.info("github %s: PR #%d on %s at %s", self.repository, pull.number, change.branch, sha[:12])
        return pull

    def comment(self, number: int, body: str, *, key: str) -> None:
        self._call(
            f"sticky comment {key!r} on PR #{number}", lambda: self._sticky(self._pull_request(number), body, key=key)
        )

    def set_check(self, number: int, *, state: base.CheckState, summary: str, context: str) -> None:
        description = summary if len(summary) <= DESCRIPTION_LIMIT else summary[: DESCRIPTION_LIMIT - 1] + "…"

        def run() -> None:
            pr = self._pull_request(number)
            status = self._repository().create_status(
                pr.head.sha, state.value, target_url=pr.html_url, description=description, context=context
            )
            if status is None:
                raise errors.ForgeError(f"github {self.repository}: no status was created")

        self._call(f"set status {context!r} on PR #{number}", run)

    def add_labels(self, number: int, labels: tuple[str, ...]) -> None:
        if labels:
            self._call(f"add labels to PR #{number}", lambda: self._add_labels(number, labels))

    def merge(self, number: int, *, message: str) -> base.PullRequest:
        """A merge commit whose title names the PR; merging a merged PR again is a no-op."""

        def run() -> base.PullRequest:
            pr = self._pull_request(number)
            if pr.as_dict().get("merged_at"):
                return self._pull(pr)
            title, _, rest = message.partition("\n")
            if f"#{number}" not in title:
                title = f"{title} (#{number})"
            merged = pr.merge(commit_title=title, commit_message=rest.strip(), sha=pr.head.sha, merge_method="merge")
            if not merged:
                raise errors.ForgeError(f"github {self.repository}: PR #{number} was not merged")
            self._delete_branch(pr.head.ref, pr.head.sha)
            return self._pull(self._pull_request(number))

        return self._call(f"merge PR #{number}", run)

    def close(self, number: int, *, comment: str = "") -> base.PullRequest:
        """Close without merging; the comment is sticky too, so a retried close says it once."""

        def run() -> base.PullRequest:
            pr = self._pull_request(number)
            if comment:
                self._sticky(pr, comment, key="close")
            if pr.state == "open" and not pr.close():
                raise errors.ForgeError(f"github {self.repository}: PR #{number} was not closed")
            return self._pull(self._pull_request(number))

        return self._call(f"close PR #{number}", run)

    # -- the pieces ------------------------------------------------------------------------------

    def _repository(self) -> Any:
        if self._repo is None:
            repo = self._gh.repository(self.owner, self.name)
            if repo is None:
                raise errors.ForgeError(f"github {self.repository}: repository not found (or no access)")
            self._repo = repo
        return self._repo

    def _pull_request(self, number: int) -> Any:
        pr = self._repository().pull_request(number)
        if pr is None:
            raise errors.ForgeError(f"github {self.repository}: PR #{number} not found")
        return pr

    def _sticky(self, pr: Any, body: str, *, key: str) -> None:
        """Edit our comment marked with `key` (found on any page), or create it once. Ours: written by the
        PR's author (the bot, on the bot's PRs) or by a bot (an App's token); a marker in anyone else's
        comment is text, never edited."""
        tag = marker(key)
        text = body if tag in body else f"{tag}\n{body}"
        author = getattr(pr.user, "login", None)
        for existing in pr.issue_comments():
            user = existing.user
            if user is None or (user.login != author and getattr(user, "type", "") != "Bot"):
                continue
            if tag in (existing.body or ""):
                if existing.body != text:
                    existing.edit(text)
                return
        pr.create_comment(text)

    def _delete_branch(self, branch: str, sha: str) -> None:
        """A merged PR's head branch is done: deleted, unless it moved since the merge (then it is kept)."""
        ref = _or_none(lambda: self._repository().ref(f"heads/{branch}"))
        if ref is not None and ref.object.sha == sha and not ref.delete():
            log.warning("github %s: could not delete the merged branch %s", self.repository, branch)

    def _open_or_update(self, change: base.Change, *, target: str) -> base.PullRequest:
        repo = self._repository()
        pr = self._open_pull(change.branch)
        if pr is None:
            pr = repo.create_pull(change.title, target, change.branch, change.body)
            if pr is None:
                raise errors.ForgeError(f"github {self.repository}: no pull request was created for {change.branch!r}")
        elif (pr.title, pr.body or "") != (change.title, change.body):
            pr.update(title=change.title, body=change.body)
        has = {label["name"] for label in pr.as_dict().get("labels") or []}
        if missing := tuple(label for label in change.labels if label not in has):
            self._add_labels(pr.number, missing)  # only what is missing: a label already there costs nothing
        return self._pull(self._pull_request(pr.number))

    def _open_pull(self, branch: str) -> Any:
        for pr in self._repository().pull_requests(state="open", head=f"{self.owner}:{branch}"):
            if pr.head.ref == branch:
                return pr
        return None

    def _commit(self, change: base.Change, *, base: str) -> str:
        """Blobs, a tree on top of `base`, a commit, and the head branch moved to it (Git Data API).
        A proposal already on its branch (same base, same files) writes nothing: its statuses stay."""
        repo = self._repository()
        base_ref = _or_none(lambda: repo.ref(f"heads/{base}"))
        if base_ref is None:
            raise errors.ForgeError(f"github {self.repository}: base branch {base!r} not found")
        base_sha = base_ref.object.sha
        head_ref = _or_none(lambda: repo.ref(f"heads/{change.branch}"))
        if head_ref is not None:
            head = repo.git_commit(head_ref.object.sha)
            if [p["sha"] for p in head.parents] == [base_sha]:
                entries = {e["path"]: e["sha"] for e in repo.tree(head.tree.sha, recursive=True).as_dict()["tree"]}
                if all(entries.get(path) == blob_sha(data) for path, data in change.files.items()):
                    return str(head.sha)
        base_tree = repo.git_commit(base_sha).tree.sha
        tree = repo.create_tree(
            [
                {
                    "path": path,
                    "mode": "100644",
                    "type": "blob",
                    "sha": repo.create_blob(base64.b64encode(data).decode("ascii"), "base64"),
                }
                for path, data in sorted(change.files.items())
            ],
            base_tree=base_tree,
        )
        commit = repo.create_commit(change.message, tree.sha, [base_sha])
        if head_ref is None:
            repo.create_ref(f"refs/heads/{change.branch}", commit.sha)
        else:
            head_ref.update(commit.sha, force=True)
        return str(commit.sha)

    def _add_labels(self, number: int, labels: tuple[str, ...]) -> None:
        # github3's Issue.add_labels sends a bare array, which the API description no longer documents.
        url = f"{self._repository().url}/issues/{number}/labels"
        response = self._gh.session.post(url, json={"labels": list(labels)})
        if response.status_code != 200:
            raise github3.exceptions.error_for(response)

    def _pull(self, pr: Any) -> base.PullRequest:
        raw = pr.as_dict()
        if raw.get("merged_at"):
            state = base.PRState.MERGED
        elif raw["state"] == "open":
            state = base.PRState.OPEN
        else:
            state = base.PRState.CLOSED
        return base.PullRequest(
            number=pr.number,
            branch=pr.head.ref,
            base=pr.base.ref,
            title=pr.title,
            body=pr.body or "",
            state=state,
            labels=tuple(label["name"] for label in raw.get("labels", [])),
            approved=state is base.PRState.OPEN and self._approved_since(pr, raw),
            head_sha=pr.head.sha,
            merge_sha=(raw.get("merge_commit_sha") or "") if state is base.PRState.MERGED else "",
            url=pr.html_url,
        )

    def _ours(self, pr: Any) -> bool:
        """The head branch lives in this repository (not in a fork)."""
        head = pr.as_dict().get("head") or {}
        name = (head.get("repo") or {}).get("full_name", "")
        return str(name).lower() == self.repository.lower()

    def _approved_since(self, pr: Any, raw: Mapping[str, Any]) -> bool:
        """`_approved`, asked again only when the PR's `updated_at` or head moved since the last look
        (a review moves `updated_at`)."""
        seen = (str(raw.get("updated_at") or ""), str(pr.head.sha))
        known = self._reviews.get(pr.number)
        if known is not None and known[:2] == seen and seen[0]:
            return known[2]
        approved = self._approved(pr)
        if len(self._reviews) >= self._gate.keep:
            self._reviews.clear()
        self._reviews[pr.number] = (*seen, approved)
        return approved

    def _approved(self, pr: Any) -> bool:
        """At least one approval, and no reviewer whose latest verdict asks for changes."""
        latest: dict[str, str] = {}
        for review in pr.reviews():
            if review.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
                login = review.user.login if review.user else ""
                latest[login] = review.state
        return "APPROVED" in latest.values() and "CHANGES_REQUESTED" not in latest.values()

    # -- errors and rate limits ------------------------------------------------------------------

    def _call(self, what: str, run: Callable[[], T]) -> T:
        """Run one operation, waiting out short rate limits; translate every failure."""
        where = f"github {self.repository}: {what}"
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._authenticated(run)
            except errors.ForgeRateLimited as exc:  # the budget sent nothing: the next tick tries again
                raise errors.ForgeRateLimited(f"{where}: {exc}", retry_after=exc.retry_after) from exc
            except github3.exceptions.GitHubError as exc:
                wait = rate_limit_wait(exc.response, now=self._retry.clock())
                if wait is None:
                    raise _translate(where, exc) from exc
                # the gate has paused the identity until then; a short wait is waited out here
                if attempt >= self._retry.attempts or wait > self._retry.max_wait:
                    raise errors.ForgeRateLimited(
                        f"{where}: rate limited; retry after {wait:.0f}s", retry_after=wait
                    ) from exc
                log.warning("%s: rate limited, waiting %.0fs (attempt %d)", where, wait, attempt)
                self._retry.sleep(wait)
            except (github3.exceptions.TransportError, requests.RequestException) as exc:
                raise errors.ForgeUnavailable(f"{where}: {type(exc).__name__}: cannot reach {self.api_url}") from exc
            except github3.exceptions.GitHubException as exc:
                raise errors.ForgeError(f"{where}: {type(exc).__name__}") from exc

    def _authenticated(self, run: Callable[[], T]) -> T:
        if self._app is None:
            return run()
        try:
            if not getattr(self._gh.session, "auth", None):
                self._login_app()
            return run()
        except github3.exceptions.AppInstallationTokenExpired:
            self._login_app()
            return run()

    def _login_app(self) -> None:
        assert self._app is not None
        # PyJWT wants the issuer as a string; github3 passes the id through as given
        self._gh.login_as_app_installation(self._app.private_key, str(self._app.app_id), self._app.installation_id)


def blob_sha(data: bytes) -> str:
    """The git object id of a file's content, as GitHub reports it in a tree."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _or_none(get: Callable[[], T]) -> T | None:
    """A read where 404 means "there is none"."""
    try:
        return get()
    except github3.exceptions.NotFoundError:
        return None


@dataclass(frozen=True)
class Kept:
    """A GET's answer kept for its next conditional request."""

    etag: str
    body: bytes
    link: str  # the pagination header, so a kept page still leads to the next

    def answer(self, url: str) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response._content = self.body
        response.encoding = "utf-8"
        response.url = url
        headers = {"Content-Type": "application/json; charset=utf-8", "ETag": self.etag}
        if self.link:
            headers["Link"] = self.link
        response.headers = requests.structures.CaseInsensitiveDict(headers)
        return response


class Gate:
    """Between github3 and the wire: each request spends from the identity's budget (or is refused
    before it is sent), a GET carries the ETag of its last answer, and a `304` is that answer again,
    free. A rate-limit answer pauses the identity. While paused or spent, every request raises
    `errors.ForgeRateLimited`, reads too: a kept copy of a PR listing may predate a revert PR (opened by
    another process), and the reconciler must know that it does not know (it then writes only what
    takes a canary out)."""

    def __init__(self, spending: budget.Budget, *, keep: int) -> None:
        self.budget = spending
        self.keep = keep
        self.kept: dict[str, Kept] = {}

    def send(
        self,
        method: str,
        url: str,
        params: Any,
        send: Callable[[dict[str, str]], requests.Response],
    ) -> requests.Response:
        kind = budget.kind_of(method)
        key = str(requests.Request("GET", url, params=params).prepare().url) if kind is budget.Kind.READ else ""
        kept = self.kept.get(key) if key else None
        with self.budget.spend(kind) as ticket:
            response = send({"If-None-Match": kept.etag} if kept is not None else {})
            if kept is not None and response.status_code == 304:
                ticket.free()
                if (link := response.headers.get("Link")) is not None and link != kept.link:
                    kept = self.kept[key] = Kept(kept.etag, kept.body, link)  # a page appeared or went
                return kept.answer(key)
            self._watch(response)
            if key and response.status_code == 200 and (etag := response.headers.get("ETag")):
                if len(self.kept) >= self.keep:
                    self.kept.clear()  # a long run starts over rather than grow without bound
                self.kept[key] = Kept(etag, response.content, response.headers.get("Link", ""))
            return response

    def _watch(self, response: requests.Response) -> None:
        """Pause the identity on a rate-limit answer, or when its primary budget is used up."""
        now = self.budget.clock()
        wait = rate_limit_wait(response, now=now)
        if wait is not None:
            self.budget.pause(wait, reason=f"GitHub answered {response.status_code}: a rate limit")
            return
        if response.headers.get("X-RateLimit-Remaining") == "0":
            try:
                reset = float(response.headers.get("X-RateLimit-Reset", ""))
            except ValueError:
                reset = now + self.budget.limits.default_pause
            self.budget.pause(reset - now, reason="GitHub's hourly budget is used up")


class Session(github3.session.GitHubSession):  # type: ignore[misc]
    """github3's session with a `Gate` in front of the wire (none before a forge sets it)."""

    gate: Gate | None = None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        parent = super().request
        gate = self.gate
        if gate is None or str(url).endswith("/access_tokens"):  # an App's JWT: not the installation's budget
            return parent(method, url, *args, **kwargs)  # type: ignore[no-any-return]

        def send(extra: dict[str, str]) -> requests.Response:
            if extra:
                kwargs["headers"] = {**(kwargs.get("headers") or {}), **extra}
            return parent(method, url, *args, **kwargs)  # type: ignore[no-any-return]

        return gate.send(method, str(url), kwargs.get("params"), send)


def _client(api_url: str, *, timeout: float) -> Any:
    session = Session(default_connect_timeout=timeout, default_read_timeout=timeout)
    if api_url == PUBLIC_API:
        return github3.GitHub(session=session)
    return github3.GitHubEnterprise(api_url.removesuffix("/api/v3") + "/", session=session)


def rate_limit_wait(response: requests.Response | None, *, now: float) -> float | None:
    """Seconds to wait when `response` is a rate limit (403/429 with GitHub's headers), else None."""
    if response is None or response.status_code not in (403, 429):
        return None
    headers = response.headers
    if retry_after := headers.get("Retry-After"):
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return 60.0
    if headers.get("X-RateLimit-Remaining") == "0":
        try:
            return max(0.0, float(headers.get("X-RateLimit-Reset", "")) - now)
        except ValueError:
            return 60.0
    if response.status_code == 429 or "rate limit" in response.text.lower():
        return 60.0  # a secondary limit without headers: GitHub asks for at least a minute
    return None


def _translate(where: str, exc: github3.exceptions.GitHubError) -> errors.ForgeError:
    if isinstance(exc, github3.exceptions.IncompleteResponse):
        return errors.ForgeError(f"{where}: an unexpected response ({exc.msg})")
    detail = f"HTTP {exc.code}: {exc.msg or 'no message'}"
    for item in exc.errors or []:
        if isinstance(item, dict) and item.get("message"):
            detail += f"; {item['message']}"
    if exc.code >= 500:
        return errors.ForgeUnavailable(f"{where}: {detail}")
    return errors.ForgeError(f"{where}: {detail}")

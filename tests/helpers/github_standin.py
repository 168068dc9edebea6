"""A local GitHub for tests: a threaded HTTP server on port 0 holding one repository in memory.

It routes by GitHub's official OpenAPI description (tests/github/openapi-subset.json, through github_openapi.py) and records every request
or response that breaks it in `violations`; a route it does not document is a violation too.
Responses are built from the documented schema (every field GitHub documents) with our values on top.
Branch protection keeps its required status checks: a merge waits, as on GitHub, until the latest
status of each required context on the PR's head commit is success (405 with GitHub's message).
It enforces GitHub's request budget per token (`Limits`): every GET answer carries an ETag, a matching
`If-None-Match` is answered `304` and not counted; too many requests, too many content-creating ones,
or two mutations closer than `mutation_interval` get GitHub's rate-limit answers. `counts` says what
each token spent.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt

from tests.helpers import github_openapi

TOKEN = "ghs_standinTOKEN0123456789abcdef"  # a fake token for the forge tests; they prove it never leaks
PREFIX = "/api/v3"
STAMP = "2026-01-01T00:00:00Z"
# what a merge refused by branch protection links to (seen in GitHub's answers: "Required status check
# \"X\" is expected." and "... is failing.", HTTP 405)
PROTECTED_DOCS = "https://docs.github.com/articles/about-protected-branches"


SECONDARY = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out "
    "to GitHub Support for help, please include the request ID"
)
MUTATING = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass(frozen=True)
class Limits:
    """GitHub's limits per token, by default as GitHub documents them."""

    total_per_hour: int = 5_000
    content_per_minute: int = 80  # every POST, PATCH, PUT and DELETE counts as content-creating
    content_per_hour: int = 500
    mutation_interval: float = 1.0  # seconds; a mutation sooner after the last one is a secondary limit
    retry_after: int = 60  # seconds in the Retry-After of a secondary-limit answer
    secondary_status: int = 403  # GitHub answers 403 or 429


UNPACED = Limits(mutation_interval=0.0)  # for tests about something else: mutations as fast as they come


@dataclass
class Spent:
    """One token's requests, as the limits see them (sliding windows, in the stand-in's clock)."""

    requests: collections.deque[float] = field(default_factory=collections.deque)
    mutations: collections.deque[float] = field(default_factory=collections.deque)
    last_mutation: float = float("-inf")
    paused_until: float = 0.0


@dataclass
class Fault:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    op_id: str | None  # None: any operation
    count: int
    after: bool = False  # True: the operation takes effect, then the answer is this fault (a lost reply)


@dataclass
class Record:
    method: str
    path: str
    op_id: str
    body: Any
    status: int = 0


def instance(schema: dict[str, Any] | None, *, depth: int = 0, name: str = "") -> Any:
    """A value that satisfies `schema` (already JSON Schema): every documented field near the top,
    only required ones deeper down, nulls where allowed, the first of any choice."""
    if not schema:
        return None
    if "allOf" in schema:
        return instance(_pick(schema), depth=depth)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            if {"type": "null"} in schema[key]:
                return None
            return instance(schema[key][0], depth=depth)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        if "null" in kind:
            return None
        kind = kind[0]
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties", {})
        names = list(props) if depth < 4 else schema.get("required", [])  # real GitHub sends every field
        return {key: instance(props.get(key, {}), depth=depth + 1, name=key) for key in names}
    if kind == "array":
        return []
    if kind == "integer" or kind == "number":
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return False
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time" or name.endswith("_at"):
            return STAMP
        if fmt in ("uri", "uri-template", "url"):
            return "https://example.invalid/"
        if fmt == "email":
            return "bot@example.invalid"
        return "x"
    return None


def git_sha(kind: str, payload: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(payload)}\0".encode() + payload).hexdigest()


@dataclass
class Pull:
    number: int
    title: str
    body: str
    head: str
    base: str
    state: str = "open"
    merged_sha: str = ""
    labels: list[str] = field(default_factory=list)
    reviews: list[tuple[str, str]] = field(default_factory=list)  # (login, state)
    fork: str = ""  # the owner of the fork the head branch lives in; "" for a branch of this repository
    merged_head: str = ""  # the head commit it was merged at (its branch may be deleted since)
    updated_at: str = STAMP  # moved by every change to the PR (a review, an edit, a push to its head)


class StandIn:
    """GitHub for one repository, `owner/name`, whose default branch holds `files`."""

    def __init__(
        self,
        *,
        owner: str = "acme",
        name: str = "rollouts",
        token: str = "",
        files: dict[str, bytes] | None = None,
        max_per_page: int = 100,
        app: tuple[int, bytes] | None = None,
        expired_tokens: int = 0,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.contract = github_openapi.contract()
        self.owner, self.name, self.token = owner, name, token
        self.max_per_page = max_per_page
        self.app = app  # (app id, the App's public key PEM): JWTs it signs may ask for installation tokens
        self.tokens = {token} if token else set()
        self.expired_tokens = expired_tokens  # the first N installation tokens come already expired
        self.violations: list[str] = []
        self.records: list[Record] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self.blobs: dict[str, bytes] = {}
        self.trees: dict[str, dict[str, str]] = {}
        self.commits: dict[str, dict[str, Any]] = {}
        self.refs: dict[str, str] = {}
        self.pulls: dict[int, Pull] = {}
        self.comments: dict[int, dict[str, Any]] = {}
        self.statuses: dict[str, list[dict[str, Any]]] = {}
        self.required: dict[str, list[str]] = {}  # branch -> the status contexts a merge into it waits for
        # login -> role on the repository (admin, maintain, write, triage, read, none); others are unknown (404)
        self.permissions: dict[str, str] = {}
        self.limits = limits or Limits()
        self.clock = clock
        self.spent: dict[str, Spent] = {}
        # per token: "read" and "mutation" requests counted, "not_modified" (304, free), "secondary" and
        # "primary" (rate-limit answers), "early" (requests sent while told to wait)
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._ticks = itertools.count(1)
        self._ids = itertools.count(1000)
        self._numbers = itertools.count(1)
        self._commit_seq = itertools.count(1)
        root = self._tree({path: self._blob(data) for path, data in (files or {"README.md": b"hello\n"}).items()})
        self.refs["heads/main"] = self._commit(root, [], "initial")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="github-standin", daemon=True
        )

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        return self.url + PREFIX

    def start(self) -> StandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    # -- what tests drive or inspect -------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        op_id: str | None = None,
        count: int = 1,
        message: str = "injected",
        after: bool = False,
    ) -> None:
        with self.lock:
            self.faults.append(Fault(status, headers or {}, {"message": message}, op_id, count, after))

    def review(self, number: int, *, login: str, state: str = "APPROVED") -> None:
        """A human's review (the forge never reviews)."""
        with self.lock:
            self.pulls[number].reviews.append((login, state))
            self._touch(self.pulls[number])

    def counted(self, token: str | None = None) -> int:
        """Requests that counted against the budget (of `token`, or of every token)."""
        with self.lock:
            tokens = [token] if token is not None else list(self.counts)
            return sum(self.counts[t]["read"] + self.counts[t]["mutation"] for t in tokens)

    def _touch(self, pr: Pull) -> None:
        """GitHub moves `updated_at` on every change to a PR: a later second each time here."""
        when = datetime(2026, 1, 1) + timedelta(seconds=next(self._ticks))
        pr.updated_at = when.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _touch_branch(self, ref: str) -> None:
        for pr in self.pulls.values():
            if f"heads/{pr.head}" == ref and not pr.fork and pr.state == "open":
                self._touch(pr)

    def limited(self, token: str, method: str) -> tuple[int, dict[str, str], str] | None:
        """GitHub's rate-limit answer to this request, or None when it is within the limits (then
        it is counted as sent)."""
        now, limits = self.clock(), self.limits
        spent = self.spent.setdefault(token, Spent())
        while spent.requests and spent.requests[0] <= now - 3600:
            spent.requests.popleft()
        while spent.mutations and spent.mutations[0] <= now - 3600:
            spent.mutations.popleft()
        if now < spent.paused_until:
            self.counts[token]["early"] += 1
            return self._secondary(token, spent.paused_until - now)
        if len(spent.requests) >= limits.total_per_hour:
            self.counts[token]["primary"] += 1
            reset = time.time() + (spent.requests[0] + 3600 - now)
            headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(reset) + 1)}
            return 403, headers, "API rate limit exceeded for installation."
        if method in MUTATING:
            last_minute = sum(1 for t in spent.mutations if t > now - 60)
            too_soon = now - spent.last_mutation < limits.mutation_interval
            if too_soon or last_minute >= limits.content_per_minute or len(spent.mutations) >= limits.content_per_hour:
                spent.paused_until = now + limits.retry_after
                return self._secondary(token, limits.retry_after)
            spent.mutations.append(now)
            spent.last_mutation = now
        spent.requests.append(now)
        return None

    def uncount(self, token: str) -> None:
        """A `304` is free: the request `limited` counted is taken back."""
        spent = self.spent.get(token)
        if spent and spent.requests:
            spent.requests.pop()

    def _secondary(self, token: str, wait: float) -> tuple[int, dict[str, str], str]:
        self.counts[token]["secondary"] += 1
        return self.limits.secondary_status, {"Retry-After": str(max(1, round(wait)))}, SECONDARY

    def rate_headers(self, token: str) -> dict[str, str]:
        spent = self.spent.get(token) or Spent()
        used = len(spent.requests)
        reset = time.time() + ((spent.requests[0] + 3600 - self.clock()) if spent.requests else 3600)
        return {
            "X-RateLimit-Limit": str(self.limits.total_per_hour),
            "X-RateLimit-Remaining": str(max(0, self.limits.total_per_hour - used)),
            "X-RateLimit-Used": str(used),
            "X-RateLimit-Reset": str(int(reset)),
        }

    def read_file(self, branch: str, path: str) -> bytes:
        with self.lock:
            tree = self.trees[self.commits[self.refs[f"heads/{branch}"]]["tree"]]
            return self.blobs[tree[path]]

    def push(self, files: dict[str, bytes], message: str, *, branch: str = "main") -> str:
        """A push to `branch` outside the API (as a person's `git push`): `files` over its tree."""
        with self.lock:
            ref = f"heads/{branch}"
            parent = self.refs[ref]
            entries = dict(self.trees[self.commits[parent]["tree"]])
            entries.update({path: self._blob(data) for path, data in files.items()})
            self.refs[ref] = self._commit(self._tree(entries), [parent], message)
            self._touch_branch(ref)
            return self.refs[ref]

    def pull_files(self, number: int) -> dict[str, bytes]:
        """The files a PR's head commit changes against its parent: what a merge brings to the base."""
        with self.lock:
            pr = self.pulls[number]
            head = self.commits[pr.merged_head or self.refs[f"heads/{pr.head}"]]
            parent = self.trees[self.commits[head["parents"][0]]["tree"]] if head["parents"] else {}
            return {k: self.blobs[v] for k, v in self.trees[head["tree"]].items() if parent.get(k) != v}

    def ops(self) -> list[str]:
        with self.lock:
            return [r.op_id for r in self.records]

    # -- the git object store --------------------------------------------------------------------

    def _blob(self, data: bytes) -> str:
        sha = git_sha("blob", data)
        self.blobs[sha] = data
        return sha

    def _tree(self, entries: dict[str, str]) -> str:
        sha = git_sha("tree", json.dumps(sorted(entries.items())).encode())
        self.trees[sha] = dict(entries)
        return sha

    def _commit(self, tree: str, parents: list[str], message: str) -> str:
        payload = json.dumps([tree, parents, message, next(self._commit_seq)]).encode()
        sha = git_sha("commit", payload)
        self.commits[sha] = {"tree": tree, "parents": parents, "message": message}
        return sha

    # -- JSON shapes -----------------------------------------------------------------------------

    @property
    def repo_api(self) -> str:
        return f"{self.api_url}/repos/{self.owner}/{self.name}"

    def _user(self, login: str) -> dict[str, Any]:
        return {"login": login, "id": 7, "type": "User", "url": f"{self.api_url}/users/{login}"}

    def _fork_side(self, pr: Pull, sha: str) -> dict[str, Any]:
        repo = {**self._repo_json(), "id": 2, "full_name": f"{pr.fork}/{self.name}", "owner": self._user(pr.fork)}
        repo["url"] = f"{self.api_url}/repos/{pr.fork}/{self.name}"
        repo["html_url"] = f"{self.url}/{pr.fork}/{self.name}"
        return {"label": f"{pr.fork}:{pr.head}", "ref": pr.head, "sha": sha, "user": self._user(pr.fork), "repo": repo}

    def closed_pull(self, *, branch: str, title: str, merged: bool = False, base: str = "main") -> int:
        """A PR of this repository closed long ago (its branch deleted): history; returns its number."""
        with self.lock:
            number = next(self._numbers)
            main = self.refs[f"heads/{base}"]
            self.pulls[number] = Pull(
                number, title, "", branch, base, state="closed", merged_sha=main if merged else "", merged_head=main
            )
            return number

    def open_fork_pull(self, *, fork: str, branch: str, title: str, body: str = "", base: str = "main") -> int:
        """A pull request from `fork`'s branch (as anyone on GitHub can open); returns its number."""
        with self.lock:
            number = next(self._numbers)
            self.pulls[number] = Pull(number, title, body, branch, base, fork=fork)
            return number

    def _repo_json(self) -> dict[str, Any]:
        return {
            "id": 1,
            "name": self.name,
            "full_name": f"{self.owner}/{self.name}",
            "owner": self._user(self.owner),
            "url": self.repo_api,
            "html_url": f"{self.url}/{self.owner}/{self.name}",
            "default_branch": "main",
        }

    def _tree_json(self, sha: str) -> dict[str, Any]:
        """Flat paths, as `?recursive=1` answers (this store keeps no tree objects for directories)."""
        tree = [
            {"path": k, "mode": "100644", "type": "blob", "sha": v, "size": len(self.blobs[v])}
            for k, v in sorted(self.trees[sha].items())
        ]
        return {"sha": sha, "url": f"{self.repo_api}/git/trees/{sha}", "tree": tree, "truncated": False}

    def _commit_json(self, sha: str) -> dict[str, Any]:
        commit = self.commits[sha]
        person = {"name": "rollout-bot", "email": "bot@example.invalid", "date": STAMP}
        return {
            "sha": sha,
            "url": f"{self.repo_api}/git/commits/{sha}",
            "message": commit["message"],
            "author": person,
            "committer": person,
            "tree": {"sha": commit["tree"], "url": f"{self.repo_api}/git/trees/{commit['tree']}"},
            "parents": [
                {"sha": p, "url": f"{self.repo_api}/git/commits/{p}", "html_url": f"{self.url}/commit/{p}"}
                for p in commit["parents"]
            ],
            "verification": {"verified": True, "reason": "valid", "signature": None, "payload": None},
        }

    def _ref_json(self, ref: str) -> dict[str, Any]:
        sha = self.refs[ref]
        return {
            "ref": f"refs/{ref}",
            "url": f"{self.repo_api}/git/refs/{ref}",
            "object": {"type": "commit", "sha": sha, "url": f"{self.repo_api}/git/commits/{sha}"},
        }

    def _pull_json(self, pr: Pull) -> dict[str, Any]:
        api = f"{self.repo_api}/pulls/{pr.number}"
        issue = f"{self.repo_api}/issues/{pr.number}"
        html = f"{self.url}/{self.owner}/{self.name}/pull/{pr.number}"
        head_sha = pr.merged_head or (self.refs.get(f"heads/{pr.head}", "") if not pr.fork else "f" * 40)
        base_sha = self.refs.get(f"heads/{pr.base}", "")

        def side(ref: str, sha: str) -> dict[str, Any]:
            return {
                "label": f"{self.owner}:{ref}",
                "ref": ref,
                "sha": sha,
                "user": self._user(self.owner),
                "repo": self._repo_json(),
            }

        merged = bool(pr.merged_sha)
        return {
            "url": api,
            "id": pr.number + 5000,
            "number": pr.number,
            "state": "open" if pr.state == "open" else "closed",
            "title": pr.title,
            "body": pr.body,
            "body_html": f"<p>{pr.body}</p>",
            "body_text": pr.body,
            "user": self._user("rollout-bot"),
            "labels": [
                {"id": i + 1, "name": name, "url": f"{self.repo_api}/labels/{name}"} for i, name in enumerate(pr.labels)
            ],
            "head": side(pr.head, head_sha) if not pr.fork else self._fork_side(pr, head_sha),
            "base": side(pr.base, base_sha),
            "html_url": html,
            "issue_url": issue,
            "comments_url": f"{issue}/comments",
            "statuses_url": f"{self.repo_api}/statuses/{head_sha}",
            "review_comment_url": f"{api}/comments{{/number}}",
            "_links": {
                "self": {"href": api},
                "html": {"href": html},
                "issue": {"href": issue},
                "comments": {"href": f"{issue}/comments"},
                "review_comments": {"href": f"{api}/comments"},
                "review_comment": {"href": f"{api}/comments{{/number}}"},
                "commits": {"href": f"{api}/commits"},
                "statuses": {"href": f"{self.repo_api}/statuses/{head_sha}"},
            },
            "merged": merged,
            "updated_at": pr.updated_at,
            "merged_at": STAMP if merged else None,
            "closed_at": None if pr.state == "open" else STAMP,
            "merge_commit_sha": pr.merged_sha or None,
        }

    def _comment_json(self, comment_id: int) -> dict[str, Any]:
        c = self.comments[comment_id]
        return {
            "id": comment_id,
            "url": f"{self.repo_api}/issues/comments/{comment_id}",
            "html_url": f"{self.url}/{self.owner}/{self.name}/pull/{c['issue']}#issuecomment-{comment_id}",
            "issue_url": f"{self.repo_api}/issues/{c['issue']}",
            "body": c["body"],
            "body_html": f"<p>{c['body']}</p>",
            "body_text": c["body"],
            "user": self._user(c["user"]),
        }

    # -- operations (named after their operationId) ----------------------------------------------

    def _list_pulls(self, query: dict[str, list[str]]) -> list[Pull]:
        q = {k: v[-1] for k, v in query.items()}
        state = q.get("state", "open")
        found = [
            pr
            for pr in self.pulls.values()
            if state in ("all", pr.state)
            and ("head" not in q or q["head"] == f"{pr.fork or self.owner}:{pr.head}")
            and ("base" not in q or q["base"] == pr.base)
        ]
        return sorted(found, key=lambda pr: pr.number, reverse=q.get("direction", "desc") == "desc")

    def handle(self, op_id: str, p: dict[str, str], body: Any, query: dict[str, list[str]]) -> tuple[int, Any]:
        if (p.get("owner"), p.get("repo")) != (self.owner, self.name):
            return 404, {"message": "Not Found"}
        match op_id:
            case "repos/get":
                return 200, self._repo_json()
            case "git/get-ref":
                ref = p["ref"]
                return (200, self._ref_json(ref)) if ref in self.refs else (404, {"message": "Not Found"})
            case "git/get-commit":
                sha = p["commit_sha"]
                return (200, self._commit_json(sha)) if sha in self.commits else (404, {"message": "Not Found"})
            case "git/get-tree":
                sha = p["tree_sha"]
                if sha not in self.trees:
                    return 404, {"message": "Not Found"}
                return 200, self._tree_json(sha)
            case "git/create-blob":
                data = body["content"].encode()
                if body.get("encoding") == "base64":
                    data = base64.b64decode(body["content"])
                sha = self._blob(data)
                return 201, {"sha": sha, "url": f"{self.repo_api}/git/blobs/{sha}"}
            case "git/create-tree":
                entries = dict(self.trees.get(body.get("base_tree", ""), {}))
                if body.get("base_tree") and body["base_tree"] not in self.trees:
                    return 422, {"message": "base_tree not found"}
                for e in body["tree"]:
                    if e.get("sha") is None:
                        entries.pop(e["path"], None)
                    else:
                        entries[e["path"]] = e["sha"]
                sha = self._tree(entries)
                tree = [
                    {"path": k, "mode": "100644", "type": "blob", "sha": v, "size": len(self.blobs[v])}
                    for k, v in sorted(entries.items())
                ]
                return 201, {"sha": sha, "url": f"{self.repo_api}/git/trees/{sha}", "tree": tree, "truncated": False}
            case "git/create-commit":
                if body["tree"] not in self.trees or any(x not in self.commits for x in body.get("parents", [])):
                    return 422, {"message": "tree or parent not found"}
                sha = self._commit(body["tree"], list(body.get("parents", [])), body["message"])
                return 201, self._commit_json(sha)
            case "git/create-ref":
                ref = body["ref"].removeprefix("refs/")
                if ref in self.refs:
                    return 422, {"message": "Reference already exists"}
                if body["sha"] not in self.commits:
                    return 422, {"message": "Object does not exist"}
                self.refs[ref] = body["sha"]
                self._touch_branch(ref)
                return 201, self._ref_json(ref)
            case "git/update-ref":
                ref = p["ref"]
                if ref not in self.refs:
                    return 422, {"message": "Reference does not exist"}
                if not body.get("force") and not self._descends(body["sha"], self.refs[ref]):
                    return 422, {"message": "Update is not a fast forward"}
                self.refs[ref] = body["sha"]
                self._touch_branch(ref)
                return 200, self._ref_json(ref)
            case "git/delete-ref":
                if self.refs.pop(p["ref"], None) is None:
                    return 422, {"message": "Reference does not exist"}
                return 204, None
            case "pulls/list":
                return 200, [self._pull_json(pr) for pr in self._list_pulls(query)]
            case "pulls/create":
                if f"heads/{body['head']}" not in self.refs or f"heads/{body['base']}" not in self.refs:
                    return 422, {"message": "Validation Failed", "errors": [{"message": "head or base not found"}]}
                if any(x.head == body["head"] and x.state == "open" and not x.fork for x in self.pulls.values()):
                    return 422, {
                        "message": "Validation Failed",
                        "errors": [{"message": "A pull request already exists"}],
                    }
                number = next(self._numbers)
                self.pulls[number] = Pull(number, body["title"], body.get("body") or "", body["head"], body["base"])
                self._touch(self.pulls[number])
                return 201, self._pull_json(self.pulls[number])
            case "pulls/get" | "pulls/update" | "pulls/merge" | "pulls/list-reviews":
                pr = self.pulls.get(int(p["pull_number"]))
                if pr is None:
                    return 404, {"message": "Not Found"}
                return self._on_pull(op_id, pr, body)
            case "issues/list-comments":
                number = int(p["issue_number"])
                if number not in self.pulls:
                    return 404, {"message": "Not Found"}
                return 200, [self._comment_json(i) for i, c in sorted(self.comments.items()) if c["issue"] == number]
            case "issues/create-comment":
                number = int(p["issue_number"])
                if number not in self.pulls:
                    return 404, {"message": "Not Found"}
                comment_id = next(self._ids)
                self.comments[comment_id] = {"issue": number, "body": body["body"], "user": "rollout-bot"}
                self._touch(self.pulls[number])
                return 201, self._comment_json(comment_id)
            case "issues/update-comment":
                comment_id = int(p["comment_id"])
                if comment_id not in self.comments:
                    return 404, {"message": "Not Found"}
                self.comments[comment_id]["body"] = body["body"]
                self._touch(self.pulls[self.comments[comment_id]["issue"]])
                return 200, self._comment_json(comment_id)
            case "issues/add-labels":
                pr = self.pulls.get(int(p["issue_number"]))
                if pr is None:
                    return 404, {"message": "Not Found"}
                for label in body["labels"]:
                    name = label if isinstance(label, str) else label["name"]
                    if name not in pr.labels:
                        pr.labels.append(name)
                self._touch(pr)
                return 200, [
                    {"id": i + 1, "name": n, "url": f"{self.repo_api}/labels/{n}"} for i, n in enumerate(pr.labels)
                ]
            case "repos/update-branch-protection":
                return self._protect(p["branch"], body)
            case "repos/get-collaborator-permission-level":
                role = self.permissions.get(p["username"])
                if role is None:
                    return 404, {"message": "Not Found"}
                legacy = {"maintain": "write", "triage": "read"}.get(role, role)  # GitHub's `permission` field
                user = {
                    **self._user(p["username"]),
                    "permissions": {
                        "pull": role != "none",
                        "push": legacy in ("write", "admin"),
                        "admin": role == "admin",
                    },
                }
                return 200, {"permission": legacy, "role_name": role, "user": user}
            case "repos/create-commit-status":
                sha = p["sha"]
                if sha not in self.commits:
                    return 422, {"message": "No commit found for SHA"}
                status = {k: body.get(k) for k in ("state", "description", "target_url")}
                status.update(context=body.get("context", "default"), id=next(self._ids))
                self.statuses.setdefault(sha, []).append(status)
                return 201, {**status, "url": f"{self.repo_api}/statuses/{sha}", "creator": self._user("rollout-bot")}
        return 500, {"message": f"stand-in: {op_id} is in the subset but not implemented"}

    def _on_pull(self, op_id: str, pr: Pull, body: Any) -> tuple[int, Any]:
        if op_id == "pulls/get":
            return 200, self._pull_json(pr)
        if op_id == "pulls/list-reviews":
            return 200, [
                {
                    "id": i + 1,
                    "user": self._user(login),
                    "state": state,
                    "body": "",
                    "commit_id": self.refs.get(f"heads/{pr.head}", ""),
                    "html_url": f"{self.url}/r/{i}",
                    "pull_request_url": f"{self.repo_api}/pulls/{pr.number}",
                    "submitted_at": STAMP,
                }
                for i, (login, state) in enumerate(pr.reviews)
            ]
        if op_id == "pulls/update":
            if "title" in body:
                pr.title = body["title"]
            if "body" in body:
                pr.body = body["body"] or ""
            if body.get("state") in ("open", "closed") and not pr.merged_sha:
                pr.state = body["state"]
            self._touch(pr)
            return 200, self._pull_json(pr)
        # pulls/merge
        if pr.state != "open":
            return 405, {"message": "Pull Request is not mergeable"}
        head = self.refs[f"heads/{pr.head}"]
        if body and body.get("sha") and body["sha"] != head:
            return 409, {"message": "Head branch was modified. Review and try the merge again."}
        refused = self._unmet_check(pr.base, head)
        if refused:
            return 405, {"message": refused, "documentation_url": PROTECTED_DOCS}
        base = self.refs[f"heads/{pr.base}"]
        head_commit = self.commits[head]
        changed = self.trees[head_commit["tree"]]
        parent_tree = self.trees[self.commits[head_commit["parents"][0]]["tree"]] if head_commit["parents"] else {}
        merged = dict(self.trees[self.commits[base]["tree"]])
        merged.update({k: v for k, v in changed.items() if parent_tree.get(k) != v})
        message = (body or {}).get("commit_title") or f"Merge pull request #{pr.number}"
        if (body or {}).get("commit_message"):
            message += "\n\n" + body["commit_message"]
        sha = self._commit(self._tree(merged), [base, head], message)
        self.refs[f"heads/{pr.base}"] = sha
        pr.merged_sha, pr.merged_head, pr.state = sha, head, "closed"
        self._touch(pr)
        return 200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}

    def _protect(self, branch: str, body: Any) -> tuple[int, Any]:
        """Branch protection: only its required status checks are kept and enforced (on merges)."""
        if f"heads/{branch}" not in self.refs:
            return 404, {"message": "Branch not found"}
        checks = body["required_status_checks"]
        if checks is not None and checks.get("strict"):
            return 500, {"message": "stand-in: strict (up to date before merging) is not implemented"}
        contexts = [] if checks is None else [c["context"] for c in checks.get("checks", [])] or checks["contexts"]
        self.required[branch] = list(contexts)
        url = f"{self.repo_api}/branches/{branch}/protection"
        payload: dict[str, Any] = {"url": url}
        if checks is not None:
            payload["required_status_checks"] = {
                "url": f"{url}/required_status_checks",
                "strict": False,
                "contexts": list(contexts),
                "checks": [{"context": c, "app_id": None} for c in contexts],
                "contexts_url": f"{url}/required_status_checks/contexts",
            }
        return 200, payload

    def _unmet_check(self, branch: str, sha: str) -> str:
        """GitHub's refusal for the first required context whose latest status on `sha` is not success;
        "" when every one passed. A pending status is still expected; failure and error are failing."""
        latest = {s["context"]: s["state"] for s in self.statuses.get(sha, [])}
        for context in self.required.get(branch, []):
            state = latest.get(context)
            if state in (None, "pending"):
                return f'Required status check "{context}" is expected.'
            if state != "success":
                return f'Required status check "{context}" is failing.'
        return ""

    def _descends(self, sha: str, ancestor: str) -> bool:
        todo = [sha]
        while todo:
            current = todo.pop()
            if current == ancestor:
                return True
            todo += self.commits.get(current, {}).get("parents", [])
        return False


def _handler(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stalls

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._serve()

        do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            with standin.lock:
                self._locked(parts.path, query, body)

        def _locked(self, path: str, query: dict[str, list[str]], body: Any) -> None:
            route = path.removeprefix(PREFIX) if path.startswith(PREFIX + "/") else None
            found = standin.contract.match(self.command, route) if route else None
            if found is None:
                standin.violations.append(f"{self.command} {path}: undocumented route")
                standin.records.append(Record(self.command, path, "?", body, 404))
                return self._send(404, {"message": "Not Found"})
            op, params = found
            record = Record(self.command, self.path, op.op_id, body)
            standin.records.append(record)
            if op.op_id == "apps/create-installation-access-token":
                standin.violations += standin.contract.check_request(op, path_params=params, query=query, body=body)
                return self._installation_token(record, params)
            token = self.headers.get("Authorization", "").removeprefix("token ")
            if token not in standin.tokens:
                record.status = 401
                return self._send(401, {"message": "Bad credentials"})
            if refused := standin.limited(token, self.command):
                status, limit_headers, message = refused
                record.status = status
                body_out = {
                    "message": message,
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                }
                return self._send(status, body_out, {**standin.rate_headers(token), **limit_headers})
            kind = "mutation" if self.command in MUTATING else "read"
            for fault in standin.faults:
                if fault.count > 0 and fault.op_id in (None, op.op_id):
                    fault.count -= 1
                    record.status = fault.status
                    standin.counts[token][kind] += 1
                    if fault.after:
                        standin.handle(op.op_id, params, body, query)
                    return self._send(fault.status, fault.body, fault.headers)
            problems = standin.contract.check_request(op, path_params=params, query=query, body=body)
            if problems:
                standin.violations += problems
                standin.counts[token][kind] += 1
                record.status = 422
                return self._send(422, {"message": "Validation Failed (stand-in: request breaks the contract)"})
            status, payload = standin.handle(op.op_id, params, body, query)
            headers: dict[str, str] = {}
            if isinstance(payload, list) and status == 200:
                payload, headers = self._page(path, query, payload)
            schema = op.response_schema(status)
            if schema is not None and status < 300:
                payload = _complete(schema, payload)
            elif status >= 400:
                payload.setdefault("documentation_url", "https://docs.github.com/rest")
            standin.violations += standin.contract.check_response(op, status=status, body=payload)
            headers.update(standin.rate_headers(token))
            if self.command == "GET" and status == 200:
                headers["ETag"] = '"' + hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest() + '"'
                if self.headers.get("If-None-Match") == headers["ETag"]:
                    standin.counts[token]["not_modified"] += 1
                    standin.uncount(token)
                    record.status = 304
                    return self._send(304, None, headers)
            standin.counts[token][kind] += 1
            record.status = status
            self._send(status, payload, headers)

        def _installation_token(self, record: Record, params: dict[str, str]) -> None:
            claims = None
            if standin.app is not None:
                app_id, public_key = standin.app
                try:
                    jwt_text = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    claims = jwt.decode(jwt_text, public_key, algorithms=["RS256"])
                except jwt.PyJWTError:
                    claims = None
                if claims is not None and str(claims.get("iss")) != str(app_id):
                    claims = None
            if claims is None:
                record.status = 401
                return self._send(401, {"message": "A JSON web token could not be decoded"})
            token = f"ghs_installation{params['installation_id']}x{len(standin.tokens)}"
            standin.tokens.add(token)
            op = standin.contract.match("POST", f"/app/installations/{params['installation_id']}/access_tokens")
            assert op is not None
            expired = standin.expired_tokens > 0
            standin.expired_tokens -= 1
            expires = "2000-01-01T00:00:00Z" if expired else "2099-01-01T00:00:00Z"
            payload = _complete(op[0].response_schema(201), {"token": token, "expires_at": expires})
            standin.violations += standin.contract.check_response(op[0], status=201, body=payload)
            record.status = 201
            return self._send(201, payload)

        def _page(self, path: str, query: dict[str, list[str]], items: list[Any]) -> tuple[list[Any], dict[str, str]]:
            per_page = min(int(query.get("per_page", ["30"])[-1]), standin.max_per_page)
            page = int(query.get("page", ["1"])[-1])
            last = max(1, -(-len(items) // per_page))
            links = []
            for rel, number in (("next", page + 1), ("last", last)):
                if page < last:
                    params = {k: v[-1] for k, v in query.items()} | {"per_page": str(per_page), "page": str(number)}
                    links.append(f'<{standin.url}{path}?{urlencode(params)}>; rel="{rel}"')
            chunk = items[(page - 1) * per_page : page * per_page]
            return chunk, ({"Link": ", ".join(links)} if links else {})

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = b"" if status in (204, 304) else json.dumps(payload).encode()  # no body
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _pick(schema: dict[str, Any] | None) -> dict[str, Any]:
    """The object form of a schema: allOf merged, the first non-null branch of a choice."""
    if not schema:
        return {}
    if "allOf" in schema:
        props: dict[str, Any] = {}
        required: list[str] = []
        for part in schema["allOf"]:
            picked = _pick(part)
            props.update(picked.get("properties", {}))
            required += picked.get("required", [])
        return {"type": "object", "properties": props, "required": required}
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = [b for b in schema[key] if b.get("type") != "null"]
            return _pick(branches[0]) if branches else {}
    return schema


def _complete(schema: dict[str, Any] | None, payload: Any) -> Any:
    """Our fields on top of a minimal valid instance of the documented schema, at every level."""
    schema = _pick(schema)
    if isinstance(payload, list):
        return [_complete(schema.get("items"), x) for x in payload]
    if isinstance(payload, dict):
        if isinstance(schema.get("type"), list):  # a nullable object, and we have one
            schema = {**schema, "type": "object"}
        out = instance(schema) if schema.get("properties") else {}
        if not isinstance(out, dict):
            out = {}
        props = schema.get("properties", {})
        for key, value in payload.items():
            out[key] = _complete(props.get(key), value) if key in props else value
        return out
    return payload

"""The reconciler's GitOps setup, shared by the reconcile, fault, security and bad-input suites: a real
remote (bare repo) with the local forge, the file router, and one real Prometheus per session with
backfilled eval history for a good and a bad canary; the fixtures (`eval_prometheus`, `gitops`) that a
suite's conftest imports, and the small readers of a tick's outcome."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git
import pytest

from controller import coordination, plan, prometheus, reconcile, repo, settings, spec, traffic
from controller.forge import local as forge_local
from controller.routers import base
from controller.routers import file as file_router
from tests.helpers import prom
from tests.helpers.routes import read_one

NOW = int(time.time()) // 60 * 60


def evals_history(route: str, variant: str, rate: float, per_minute: float) -> list[prom.PromSeries]:
    labels = {"route": route, "variant": variant}
    return [
        prom.PromSeries("llm_eval_results_total", {**labels, "result": "pass"}, per_minute * rate),
        prom.PromSeries("llm_eval_results_total", {**labels, "result": "fail"}, per_minute * (1 - rate)),
    ]


@pytest.fixture(scope="session")
def eval_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prom.PromServer]:
    work = tmp_path_factory.mktemp("reconcile-prometheus")
    history = evals_history("good", "stable", 0.90, 200) + evals_history("good", "canary", 0.90, 200)
    history += evals_history("bad", "stable", 0.90, 200) + evals_history("bad", "canary", 0.85, 200)
    # from three hours before the session to one hour after it: the gates never measure before a canary's
    # revision came to main, so a canary committed during the session needs history after its commit
    text = prom.prom_openmetrics(history, now=NOW + 3600, span=4 * 3600)
    with prom.backfilled(work, text) as server:
        yield server


CONFIG = """apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  local: {{type: file, path: routes.json}}
prometheus: {{url: "{prom}"}}
forge: {{type: local}}
"""

ROLLOUT = """# the {name} rollout
apiVersion: rollouts/v1
kind: Rollout
metadata:
  name: {name}
spec:
  router: local
  route: {route}
  stable: {{model: acme/chat-2025-01-01, prompt: prompts/v1.md}}
  canary: {{model: acme/chat-2025-01-01, prompt: prompts/v2.md}}
  steps:   # scaled down
    - {{shadow: 100, for: 1m, minSamples: 100}}
    - {{weight: 10, for: 1m}}
    - {{weight: 100}}
  analysis:
    interval: 1h
    gates:
      - {{use: eval_pass_rate, maxDrop: 2%, onFail: rollback}}
  promotion: {promotion}
  keepPreviousFor: 30m
"""


@dataclass
class GitOps:
    """A remote, the controller's workspace, its router state, and a clock the test moves."""

    remote: Path
    work: Path
    prom_url: str
    offset: timedelta = field(default_factory=timedelta)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta

    def commit(self, files: Mapping[str, str | bytes], message: str, *, at: datetime | None = None) -> str:
        """A human pushes to main (through a throwaway clone, as a user would); `at` dates the commit
        (a step that began in the past, for a process that runs on the real clock)."""
        clone = self.work / f"human-{time.monotonic_ns()}"
        r = git.Repo.clone_from(str(self.remote), clone)
        for path, text in files.items():
            (clone / path).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(text, bytes):  # a file as an attacker writes it: not necessarily UTF-8
                (clone / path).write_bytes(text)
            else:
                (clone / path).write_text(text)
        r.git.add("-A")
        dates = {"GIT_AUTHOR_DATE": at.isoformat(), "GIT_COMMITTER_DATE": at.isoformat()} if at else {}
        r.git.commit(
            "-m",
            message,
            env={
                "GIT_AUTHOR_NAME": "human",
                "GIT_AUTHOR_EMAIL": "h@x",
                "GIT_COMMITTER_NAME": "human",
                "GIT_COMMITTER_EMAIL": "h@x",
                **dates,
            },
        )
        r.git.push("origin", "HEAD:main")
        return r.head.commit.hexsha

    @property
    def forge(self) -> forge_local.LocalForge:
        return forge_local.LocalForge(self.remote, clock=self.now)

    def router(self) -> file_router.FileRouter:
        return file_router.FileRouter("local", self.work / "state" / "routes.json")

    def live(self, route: str) -> traffic.RouteState | None:
        return read_one(self.router(), route)

    def controller(
        self,
        *,
        holder: str = "test",
        forge: object | None = None,
        knobs: settings.Settings | None = None,
        shards: coordination.Shards | None = None,
    ) -> reconcile.Controller:
        ws = repo.Workspace.open(str(self.remote), self.work / f"clone-{holder}")

        def routers(name: str, cfg: spec.RouterConfig, routes: object, cohorts: object) -> base.Router:
            assert isinstance(cfg, spec.FileRouterConfig)
            return file_router.FileRouter(name, self.work / "state" / cfg.path)

        return reconcile.Controller(
            ws,
            forge or self.forge,  # type: ignore[arg-type]
            routers,
            prometheus.Prometheus(self.prom_url),
            holder=holder,
            clock=self.now,
            knobs=knobs or settings.Settings(),
            shards=shards or coordination.Shards(spec.HOME_REPOSITORY),
        )

    def main_log(self) -> list[str]:
        return [c.summary for c in git.Repo(self.remote).iter_commits("main", first_parent=True)]

    def main_merges(self) -> list[str]:
        """The subjects of the merge commits on main (merged pull requests), newest first."""
        commits = git.Repo(self.remote).iter_commits("main", first_parent=True)
        return [str(c.summary) for c in commits if len(c.parents) > 1]

    def branches(self) -> list[str]:
        """The remote's branch names."""
        return [str(h.name) for h in git.Repo(self.remote).heads]


@pytest.fixture
def gitops(tmp_path: Path, eval_prometheus: prom.PromServer, monkeypatch: pytest.MonkeyPatch) -> GitOps:
    """A GitOps remote with one rollout, its gates read from the session's Prometheus."""
    return make_gitops(tmp_path, eval_prometheus.url, monkeypatch)


def make_gitops(tmp_path: Path, prom_url: str, monkeypatch: pytest.MonkeyPatch) -> GitOps:
    """A GitOps remote with one rollout (good-bot); every `rollout` command the test runs reads its
    router state from the same place the test's controller writes it ($ROLLOUT_STATE_DIR)."""
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    ops = GitOps(remote, tmp_path, prom_url)
    ops.commit(
        {
            "rollouts/controller.yaml": CONFIG.format(prom=prom_url),
            "rollouts/good-bot/rollout.yaml": ROLLOUT.format(name="good-bot", route="good", promotion="manual"),
            "rollouts/good-bot/prompts/v1.md": "You are helpful.\n",
            "rollouts/good-bot/prompts/v2.md": "You are helpful and brief.\n",
        },
        "Add good-bot",
        at=HISTORY_BEGAN,
    )
    return ops


#: When the fixtures' rollouts came to main: as the session's backfilled history began, so that the
#: gates, which never measure before a canary's revision came to main, find it theirs.
HISTORY_BEGAN = datetime.fromtimestamp(NOW - 3 * 3600 + 60, UTC)


def add_bad_bot(gitops: GitOps, *, promotion: str = "manual") -> None:
    """A rollout whose canary fails its eval gate, on a route the application already reads: the
    canary mirrored there at step 0 (a rollback lowers live state; it never creates any)."""
    gitops.commit(
        {
            "rollouts/bad-bot/rollout.yaml": ROLLOUT.format(name="bad-bot", route="bad", promotion=promotion),
            "rollouts/bad-bot/prompts/v1.md": "You are helpful.\n",
            "rollouts/bad-bot/prompts/v2.md": "Answer in riddles.\n",
        },
        "Add bad-bot",
        at=HISTORY_BEGAN,
    )
    gitops.router().write({"bad": traffic.RouteState({"stable": 100, "canary": 0}, shadow=100)})


def outcome(tick: reconcile.Tick, name: str) -> reconcile.Outcome:
    return next(o for o in tick.outcomes if o.rollout == name)


def kind(tick: reconcile.Tick, name: str) -> plan.Kind:
    found = outcome(tick, name)
    assert found.error is None, found.error
    assert found.decision is not None
    return found.decision.kind


def approve_and_merge(gitops: GitOps, number: int) -> None:
    forge = gitops.forge
    forge.approve(number, by="alice")
    forge.merge(number, message="approved")


def remote_files(remote: Path) -> dict[str, bytes]:
    """Every file on the remote's main, by path."""
    tree = git.Repo(remote).commit("main").tree
    return {b.path: b.data_stream.read() for b in tree.traverse() if isinstance(b, git.Blob)}

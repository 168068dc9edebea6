"""Notifications end to end: real ticks (file router, local forge, a real Prometheus) with the real
dispatcher posting to a local receiver (tests/helpers/webhook_receiver.py)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import jsonschema
import pytest

from controller import coordination, errors, notifier, plan, settings, telemetry
from controller.cli import fleet, run
from controller.forge import base as forge_base
from controller.forge import local as forge_local
from tests.helpers.gitops import CONFIG, HISTORY_BEGAN, GitOps, add_bad_bot, kind, outcome
from tests.helpers.memory_store import Cluster, MemoryStore
from tests.helpers.net import free_port, wait_for
from tests.helpers.webhook_receiver import Receiver, receiver

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SECRET = "T0-B0-s3cr3t"
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "notification.schema.json").read_text())
NOTIFY = """notifications:
  - {type: webhook, urlEnv: ROLLOUT_TEST_WEBHOOK}
  - {type: slack, urlEnv: ROLLOUT_TEST_SLACK, on: [rollback]}
"""


def notifying(gitops: GitOps, r: Receiver, *, knobs: settings.Notifications | None = None) -> notifier.Dispatcher:
    gitops.commit({"rollouts/controller.yaml": CONFIG.format(prom=gitops.prom_url) + NOTIFY}, "Notify")
    env = {"ROLLOUT_TEST_WEBHOOK": f"{r.url}/generic", "ROLLOUT_TEST_SLACK": f"{r.url}/slack/T0/B0/secret"}
    return notifier.Dispatcher(env=env, knobs=knobs or settings.Notifications(flush=10.0))


def test_a_failed_gate_makes_exactly_one_rollback_notification(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    with receiver() as r:
        sink = notifying(gitops, r)
        c = gitops.controller()
        c.notifier = sink
        assert "would rollback" in outcome(c.reconcile_once(dry_run=True), "bad-bot").actions[0]  # tells nothing
        assert kind(c.reconcile_once(), "bad-bot") is plan.Kind.ROLLBACK
        for _ in range(3):  # the revert PR is open: the rollout holds, nothing more is told
            gitops.advance(timedelta(minutes=5))
            assert kind(c.reconcile_once(), "bad-bot") is plan.Kind.HOLD
        assert sink.close()
        generic = [q.body for q in r.requests if q.path == "/generic"]
        slack = [q.body for q in r.requests if q.path.startswith("/slack/")]
    [body] = [b for b in generic if b["rollout"] == "bad-bot"]
    jsonschema.validate(body, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    [pr] = gitops.forge.list(prefix="rollout/bad-bot/")
    assert body["action"] == "rollback" and body["rollout"] == "bad-bot" and body["byHand"] is False
    assert body["pr"] == {"number": pr.number, "url": pr.url, "state": "open"}
    assert [e["gate"] for e in body["evidence"]] == ["eval_pass_rate"] and body["evidence"][0]["verdict"] == "FAIL"
    assert body["evidence"][0]["stable"] == pytest.approx(0.9, abs=0.01)
    assert body["evidence"][0]["canary"] == pytest.approx(0.85, abs=0.01)
    [message] = slack
    assert message["text"].startswith(f"bad-bot rolled back (revert PR #{pr.number})")
    # good-bot, meanwhile, finished its first step: its promotion PR waits for review (told once)
    assert [b["action"] for b in generic if b["rollout"] == "good-bot"] == ["promotion"]


class Flaky(forge_local.LocalForge):
    """The local forge, down (every list refused) until told otherwise."""

    down = True

    def list(self, *, prefix: str = "", state: forge_base.PRState | None = None) -> list[forge_base.PullRequest]:
        if self.down:
            raise errors.ForgeUnavailable("github acme/rollouts: 503 Service Unavailable")
        return super().list(prefix=prefix, state=state)


def test_a_rollback_while_the_forge_is_down_is_told_at_once_and_again_with_its_revert_pr(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    with receiver() as r:
        sink = notifying(gitops, r)
        forge = Flaky(gitops.remote)
        c = gitops.controller(forge=forge)
        c.notifier = sink
        assert outcome(c.reconcile_once(), "bad-bot").adapter == "forge"  # rolled back; no PR could be opened
        forge.down = False
        for _ in range(3):  # the next tick opens the revert PR, and tells it; then the rollout holds
            gitops.advance(timedelta(minutes=1))
            c.reconcile_once()
        assert sink.close()
        told = [b for b in r.bodies() if "byHand" in b and b["rollout"] == "bad-bot"]
    [pr] = gitops.forge.list(prefix="rollout/bad-bot/")
    assert [(b["action"], b["pr"] and b["pr"]["number"]) for b in told] == [("rollback", None), ("rollback", pr.number)]


def test_the_tick_completes_while_the_receiver_hangs(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    with receiver() as r:
        r.hang = True
        sink = notifying(gitops, r, knobs=settings.Notifications(timeout=60.0, flush=0.1))
        c = gitops.controller()
        c.notifier = sink
        tick = c.reconcile_once()  # returns while the receiver holds the first POST
        assert kind(tick, "bad-bot") is plan.Kind.ROLLBACK and outcome(tick, "bad-bot").pr is not None
        wait_for("the receiver to hold both destinations' notification", lambda: r.holding == 2)
        assert gitops.live("bad").weight("canary") == 0
        assert kind(c.reconcile_once(), "bad-bot") is plan.Kind.HOLD  # the next tick does not wait either
        assert sink.close() is False
        r.release()


def test_an_abort_is_told_as_a_rollback_by_hand(gitops: GitOps) -> None:
    with receiver() as r:
        sink = notifying(gitops, r)
        c = gitops.controller()
        c.notifier = sink
        c.reconcile_once()
        done = c.abort("good-bot", reason="customer <!channel> complaints")
        assert sink.close()
        [body] = [q.body for q in r.requests if q.path == "/generic"]
        [message] = [q.body for q in r.requests if q.path.startswith("/slack/")]
    assert body["action"] == "rollback" and body["byHand"] is True and body["pr"]["number"] == done.pr
    assert "customer <!channel> complaints" in body["reason"]
    assert "&lt;!channel&gt;" in message["blocks"][0]["text"]["text"]


def test_a_promotion_pr_is_told_once_while_it_waits(gitops: GitOps) -> None:
    with receiver() as r:
        sink = notifying(gitops, r)
        c = gitops.controller()
        c.notifier = sink
        assert kind(c.reconcile_once(), "good-bot") is plan.Kind.APPLY
        gitops.advance(timedelta(minutes=2))
        for _ in range(3):  # the advance PR waits for review: decided every tick, told once
            assert kind(c.reconcile_once(), "good-bot") is plan.Kind.ADVANCE
        restarted = gitops.controller()  # a new process: the PR is no news to it
        restarted.notifier = sink
        assert kind(restarted.reconcile_once(), "good-bot") is plan.Kind.ADVANCE
        assert sink.close()
        bodies = [q.body for q in r.requests if q.path == "/generic"]
    [body] = bodies
    assert body["action"] == "promotion" and body["step"] == 2 and body["steps"] == 3 and body["pr"]["state"] == "open"
    assert not any(q.path.startswith("/slack/") for q in r.requests), "the slack destination asked for rollbacks only"


def test_a_waiting_promotion_is_not_told_again_after_main_moves(gitops: GitOps) -> None:
    """Each `rollout reconcile` from cron is a new process with an empty memory: a merge to main that
    moves the waiting PR to main's new head ("updated") must not make it news again."""
    with receiver() as r:
        sink = notifying(gitops, r)
        c = gitops.controller()
        c.notifier = sink
        assert kind(c.reconcile_once(), "good-bot") is plan.Kind.APPLY
        gitops.advance(timedelta(minutes=2))
        assert kind(c.reconcile_once(), "good-bot") is plan.Kind.ADVANCE
        for n in range(2):  # someone merges something unrelated; the next cron run is a new process
            gitops.commit({f"docs/note-{n}.md": f"note {n}\n"}, f"Unrelated {n}")
            cron = gitops.controller()
            cron.notifier = sink
            assert kind(cron.reconcile_once(), "good-bot") is plan.Kind.ADVANCE
        assert sink.close()
        bodies = [q.body for q in r.requests if q.path == "/generic"]
    assert [b["action"] for b in bodies] == ["promotion"]


def rollout(gitops: GitOps, r: Receiver, *argv: str) -> subprocess.CompletedProcess[str]:
    """`rollout ARGV` as its own process, as an operator or cron runs it: the notification thread is a
    daemon, so only the command's flush on exit can get its message out."""
    workdir = ["--remote", str(gitops.remote), "--workdir", str(gitops.work / "cli")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ROLLOUT_TEST_WEBHOOK": f"{r.url}/generic/{SECRET}"}
    env["ROLLOUT_TEST_SLACK"] = ""  # one destination: the receiver's first answer goes to it
    return subprocess.run(
        [sys.executable, "-m", "controller", *argv, *workdir],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def delivered_on_a_retry(r: Receiver) -> list[tuple[str, str, bool]]:
    """(rollout, action, byHand) of each POST to the generic destination: the receiver answered the
    first 500, so a message is there twice only when the retry, 1 s later, went out before the exit."""
    return [(b["rollout"], b["action"], b["byHand"]) for b in r.bodies() if "byHand" in b]


def test_rollout_reconcile_posts_before_it_exits(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    with receiver() as r:
        notifying(gitops, r)
        r.fail_first = 1
        done = rollout(gitops, r, "reconcile", "--once")
        assert done.returncode == 0, done.stdout + done.stderr
        told = delivered_on_a_retry(r)
    assert told == [("bad-bot", "rollback", False)] * 2
    assert SECRET not in done.stdout + done.stderr


def test_rollout_abort_posts_before_it_exits(gitops: GitOps) -> None:
    with receiver() as r:
        notifying(gitops, r)
        assert rollout(gitops, r, "reconcile", "--once").returncode == 0
        r.fail_first = 1
        done = rollout(gitops, r, "abort", "good-bot", "--reason", "bad answers")
        assert done.returncode == 0, done.stdout + done.stderr
        told = delivered_on_a_retry(r)
    assert told == [("good-bot", "rollback", True)] * 2
    assert SECRET not in done.stdout + done.stderr


def test_rollout_hold_is_told_as_a_pause_by_hand_before_it_exits(gitops: GitOps) -> None:
    with receiver() as r:
        notifying(gitops, r)
        assert rollout(gitops, r, "reconcile", "--once").returncode == 0
        r.fail_first = 1
        done = rollout(gitops, r, "hold", "good-bot", "--reason", "launch day", "--by", "mia")
        assert done.returncode == 0, done.stdout + done.stderr
        told = delivered_on_a_retry(r)
        [body, *_] = r.bodies()
    assert told == [("good-bot", "pause", True)] * 2
    jsonschema.validate(body, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    [pr] = gitops.forge.list(prefix="rollout/good-bot/")
    assert body["pr"]["number"] == pr.number and "held by hand by @mia: launch day" in body["reason"]
    assert body["summary"] == f"good-bot paused at step 1 (PR #{pr.number})" and body["step"] == 1


def test_rollout_run_posts_and_counts_and_never_logs_the_url(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    port = free_port()
    with receiver() as r:
        notifying(gitops, r)
        command = [sys.executable, "-m", "controller", "run", "--interval", "1s", "--metrics-port", str(port)]
        proc = subprocess.Popen(
            [*command, "--remote", str(gitops.remote), "--workdir", str(gitops.work / "run")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "ROLLOUT_TEST_WEBHOOK": f"{r.url}/generic/{SECRET}",
                "ROLLOUT_TEST_SLACK": "",  # unset: said at start, never stops a tick
            },
        )
        try:
            metric = 'rollout_notifications_total{destination_type="webhook",outcome="delivered"} 1.0'

            def counted() -> bool:
                return metric in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text

            wait_for("the rollback's notification to be delivered", counted, deadline=60, tolerate=(httpx.HTTPError,))
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        bodies = [q.body for q in r.requests if q.path.startswith("/generic/")]
    assert [(b["rollout"], b["action"]) for b in bodies if b["action"] == "rollback"] == [("bad-bot", "rollback")]
    text = out.decode()
    assert proc.returncode == 0 and "$ROLLOUT_TEST_SLACK is not set; nothing is posted there" in text
    assert SECRET not in text


def test_a_fleet_member_tells_its_repositories_rollbacks(gitops: GitOps, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rollout run` as a fleet member builds every repository's controller with the process's one
    dispatcher (controller/cli/fleet.py): the home repository's rollback is told, once, naming it."""
    add_bad_bot(gitops)
    fleet_yaml = "fleet:\n  name: test\n  shards: 4\n  coordination: {type: etcd, endpoints: ['http://127.0.0.1:9']}\n"
    with receiver() as r:
        gitops.commit(
            {"rollouts/controller.yaml": CONFIG.format(prom=gitops.prom_url) + NOTIFY + fleet_yaml},
            "Notify, as a fleet",
            at=HISTORY_BEGAN,
        )
        monkeypatch.setenv("ROLLOUT_TEST_WEBHOOK", f"{r.url}/generic")
        monkeypatch.setenv("ROLLOUT_TEST_SLACK", f"{r.url}/slack/T0/B0/secret")
        home = run.build_for(str(gitops.remote), gitops.work / "member" / "clone", branch="main", holder="fleet-test")
        coordinator = coordination.Coordinator(MemoryStore(Cluster(time.monotonic), "m1"), "m1", shards=4)
        stop, out = threading.Event(), io.StringIO()
        thread = threading.Thread(
            target=fleet.run,
            args=(home,),
            kwargs={
                "workdir": gitops.work / "member",
                "coordinator": coordinator,
                "build": lambda remote, clone, branch: run.build_for(remote, clone, branch=branch, holder="fleet-test"),
                "interval": 0.2,
                "stop": stop,
                "out": out,
                "tel": telemetry.Telemetry(),
                "lines": run._tick_lines,
            },
        )
        thread.start()
        try:
            wait_for("the rollback's notification", lambda: [q for q in r.requests if q.path == "/generic"])
            wait_for("a few more passes", lambda: out.getvalue().count("Hold") >= 1 or None)
        finally:
            stop.set()
            thread.join(timeout=30)
            run.flush_notifications()
        bodies = [q.body for q in r.requests if q.path == "/generic" and q.body["rollout"] == "bad-bot"]
    assert [(b["action"], b["repository"]) for b in bodies] == [("rollback", str(gitops.remote))]

"""A real `rollout run` process SIGKILLed at each boundary between the effects of a tick, then restarted.

`test_kill_and_race.py` simulates deaths inside one process; here the process really dies. The CLI,
given the test-only `ROLLOUT_TEST_KILL_AT=POINT`, SIGKILLs itself the first time it reaches that point
(`controller/cutpoints.py`: lease pushed, state temp file written, router written, read back, PR branch
pushed, PR opened, check set). What a death leaves stays: a held lease, a temp file beside the state
file, a branch without its PR, a PR without its check. Then `rollout reconcile --once` runs with the same
workdir (so the same holder), as a supervisor would restart it, and must take the lease back at once,
finish what the dead process began in that one tick, and give the lease back.

Real parts throughout: the file router, the local forge on a bare git remote, a real Prometheus with the
good and bad canaries' eval history. The table of cut points and outcomes is printed at the end of the
run (`tests/faults/conftest.py`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git
import pytest
from ruamel.yaml import YAML

from controller import cli, cutpoints, repo, settings, traffic
from controller.forge import base as forge_base
from tests.helpers import net, prom
from tests.helpers.faults import KILL_TABLE
from tests.helpers.gitops import CONFIG, ROLLOUT, GitOps, add_bad_bot

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0  # seconds for a process to reach its cut point, or to finish its tick


@pytest.fixture
def ops(tmp_path: Path, eval_prometheus: prom.PromServer) -> GitOps:
    """A GitOps remote with the controller config and no rollout yet."""
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    ops = GitOps(remote, tmp_path, eval_prometheus.url)
    ops.commit({"rollouts/controller.yaml": CONFIG.format(prom=eval_prometheus.url)}, "controller config")
    return ops


# -- the processes ---------------------------------------------------------------------------------


def env(ops: GitOps, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != cli.KILL_ENV}
    return {**clean, "PYTHONPATH": str(ROOT), settings.STATE_ENV: str(ops.work / "state"), **extra}


def rollout_argv(ops: GitOps, *argv: str, workdir: str = "controller") -> list[str]:
    return [
        sys.executable,
        "-m",
        "controller",
        *argv,
        "--remote",
        str(ops.remote),
        "--workdir",
        str(ops.work / workdir),
    ]


def run_until_killed(ops: GitOps, point: str) -> str:
    """`rollout run` until it SIGKILLs itself at `point`; its output. Fails if it never gets there, or
    if a process it started outlives it."""
    proc = subprocess.Popen(
        rollout_argv(ops, "run", "--interval", "1s"),
        env=env(ops, **{cli.KILL_ENV: point}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: what it leaves running can be seen
    )
    try:
        out, _ = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out.decode()
    assert proc.returncode == -signal.SIGKILL, f"not killed at {point} (exit {proc.returncode}):\n{text}"
    assert f"killed at {point}" in text, text
    net.wait_for(f"the children of the process killed at {point} to go", lambda: not group_alive(proc.pid), deadline=10)
    return text


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def reconcile_once(ops: GitOps, *, workdir: str = "controller") -> tuple[int, str]:
    done = subprocess.run(
        rollout_argv(ops, "reconcile", "--once", workdir=workdir),
        env=env(ops),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    return done.returncode, done.stdout + done.stderr


# -- what the remote, the forge and the state directory hold ---------------------------------------


def state_file(ops: GitOps) -> Path:
    return ops.work / "state" / "routes.json"


def temp_files(ops: GitOps) -> list[Path]:
    return sorted((ops.work / "state").glob(".routes.json.*"))


def live(ops: GitOps, route: str) -> traffic.RouteState | None:
    """The route as the application reads routes.json: one JSON document, never torn."""
    path = state_file(ops)
    if not path.exists():
        return None
    document = json.loads(path.read_text("utf-8"))  # a torn file fails here
    raw = document["routes"].get(route)
    return traffic.RouteState.from_json(raw) if raw is not None else None


def lease_holder(ops: GitOps) -> str | None:
    r = git.Repo(ops.remote)
    if not r.git.for_each_ref(repo.LEASE_REF):
        return None
    fields = dict(p.split("=", 1) for p in str(r.commit(repo.LEASE_REF).message).split() if "=" in p)
    return fields.get("holder", "?")


def bot_branches(ops: GitOps) -> list[str]:
    out = git.Repo(ops.remote).git.for_each_ref("--format=%(refname:short)", "refs/heads/rollout/")
    return sorted(out.split())


def merged_weight(ops: GitOps, name: str) -> int:
    """The canary weight main allows now: the weight of the step its merged `status.step` names."""
    text = git.Repo(ops.remote).git.show(f"main:rollouts/{name}/rollout.yaml")
    doc = YAML(typ="safe").load(text)
    step = (doc.get("status") or {}).get("step", 0)
    return int(doc["spec"]["steps"][step].get("weight", 0))


def pulls_text(ops: GitOps) -> str:
    found = []
    for p in ops.forge.list():
        check = ops.forge.checks(p.number).get("rollout/gates", {}).get("state", "no check")
        action = p.branch.split("/")[-1].split("-")[0]
        found.append(f"#{p.number} {action} {p.state.value}, {check}")
    return "; ".join(found) or "no PR"


def describe(ops: GitOps, route: str) -> str:
    state = live(ops, route)
    seen = f"{state.weight('canary')}%/shadow {state.shadow}%" if state else "absent"
    pulls = ops.forge.list()
    lonely = [b for b in bot_branches(ops) if b not in {p.branch for p in pulls}]
    return f"canary {seen}; temp {len(temp_files(ops))}; lease {lease_holder(ops) or 'free'}; {pulls_text(ops)}" + (
        f"; {len(lonely)} branch w/o PR" if lonely else ""
    )


def assert_consistent(ops: GitOps, name: str, route: str) -> None:
    """What must hold at every moment, a dead process or not: the state file is whole, exposure is
    within what main merged, no branch has two PRs."""
    state = live(ops, route)
    assert state is None or state.weight("canary") <= merged_weight(ops, name), "a weight raised without a merge"
    per_branch = Counter(p.branch for p in ops.forge.list())
    assert all(n == 1 for n in per_branch.values()), f"duplicate PRs: {per_branch}"


def assert_converged(ops: GitOps, name: str, route: str, restart: tuple[int, str]) -> None:
    code, out = restart
    assert code == 0 and "skipped" not in out, f"the restart did not take its lease back at once:\n{out}"
    assert_consistent(ops, name, route)
    assert temp_files(ops) == [], "a dead writer's temp file is still there after the next write"
    assert lease_holder(ops) is None, "the restart left the lease held"
    pulls = ops.forge.list()
    assert set(bot_branches(ops)) <= {p.branch for p in pulls}, "a branch without its PR"
    assert {p.branch for p in pulls if p.state is forge_base.PRState.OPEN} <= set(bot_branches(ops)), (
        "an open PR without its branch"
    )


# -- the scenarios ---------------------------------------------------------------------------------

ROLLBACK_CUTS = list(cutpoints.POINTS)
ADVANCE_CUTS = [cutpoints.BRANCH_PUSHED, cutpoints.PR_OPENED, cutpoints.CHECK_SET]
APPLY_CUTS = [cutpoints.STATE_TEMP, cutpoints.ROUTER_WRITTEN, cutpoints.READ_BACK]


@pytest.fixture
def table_row() -> Iterator[dict[str, str]]:
    """The row of the printed table this test fills in; recorded when the test ends, failed or not
    (a test marks it "ok" as its last step)."""
    row: dict[str, str] = {"outcome": "FAILED"}
    yield row
    KILL_TABLE.append(row)


@pytest.mark.parametrize("point", ROLLBACK_CUTS)
def test_killed_in_a_rollback_tick(ops: GitOps, point: str, table_row: dict[str, str]) -> None:
    """The bad canary's first tick lowers it and opens the revert PR. Killed anywhere in it, the restart
    lowers it (if the rename never happened), opens the revert PR exactly once, and sets its check."""
    add_bad_bot(ops)  # live: canary mirrored (shadow 100); its eval gate fails
    table_row.update(scenario="rollback (bad canary)", point=point)
    run_until_killed(ops, point)
    table_row["killed"] = describe(ops, "bad")
    assert_consistent(ops, "bad-bot", "bad")
    holder = cli.default_holder(ops.work / "controller")
    assert lease_holder(ops) == holder, "the dead process should still hold the lease"
    if point == cutpoints.STATE_TEMP:
        assert len(temp_files(ops)) == 1 and live(ops, "bad") == traffic.RouteState(
            {"stable": 100, "canary": 0}, shadow=100
        ), "the rename had not happened: the old state, whole, and a temp file beside it"
    if point == cutpoints.LEASE:  # another controller is told who holds it, and changes nothing
        code, out = reconcile_once(ops, workdir="another")
        assert code == 3 and f"skipped: controller {holder!r} holds the lease until" in out, out
        assert ops.forge.list() == []

    restart = reconcile_once(ops)
    table_row["restart"] = describe(ops, "bad")
    assert_converged(ops, "bad-bot", "bad", restart)
    state = live(ops, "bad")
    assert state is not None and state.weight("canary") == 0 and state.shadow == 0, "the rollback was lost"
    [pr] = ops.forge.list()
    assert pr.state is forge_base.PRState.OPEN and pr.branch.startswith("rollout/bad-bot/rollback-")
    check = ops.forge.checks(pr.number)["rollout/gates"]
    assert check["state"] == "success" and check["summary"].startswith("merging records the rollback")
    table_row["outcome"] = "ok"


def start_good_bot(ops: GitOps) -> None:
    """The good canary, committed an hour ago and mirrored since (step 0 applied): its step's time and
    samples are met, its gate passes on the hour of history since, so the next tick proposes the advance
    to 10%."""
    ago = datetime.now(UTC) - timedelta(minutes=61)
    files = {
        "rollouts/good-bot/rollout.yaml": ROLLOUT.format(name="good-bot", route="good", promotion="manual"),
        "rollouts/good-bot/prompts/v1.md": "You are helpful.\n",
        "rollouts/good-bot/prompts/v2.md": "You are helpful and brief.\n",
    }
    ops.commit(files, "Add good-bot", at=ago)
    ops.router().write({"good": traffic.RouteState({"stable": 100, "canary": 0}, shadow=100)})


@pytest.mark.parametrize("point", ADVANCE_CUTS)
def test_killed_in_a_promotion_tick(ops: GitOps, point: str, table_row: dict[str, str]) -> None:
    """The tick that proposes the advance. Killed anywhere in it, the weight stays where main has it and
    the restart leaves exactly one advance PR, with its check."""
    start_good_bot(ops)
    table_row.update(scenario="promotion (advance PR)", point=point)
    run_until_killed(ops, point)
    table_row["killed"] = describe(ops, "good")
    assert_consistent(ops, "good-bot", "good")

    restart = reconcile_once(ops)
    table_row["restart"] = describe(ops, "good")
    assert_converged(ops, "good-bot", "good", restart)
    state = live(ops, "good")
    assert state is not None and state.weight("canary") == 0 and state.shadow == 100, "raised without a merge"
    [pr] = ops.forge.list()
    assert pr.state is forge_base.PRState.OPEN and pr.title.startswith("good-bot: advance to 10%")
    assert ops.forge.checks(pr.number)["rollout/gates"]["state"] == "success"
    table_row["outcome"] = "ok"


@pytest.mark.parametrize("point", APPLY_CUTS)
def test_killed_applying_a_merged_step(ops: GitOps, point: str, table_row: dict[str, str]) -> None:
    """The advance PR is merged; the next tick raises the weight to 10%. Killed in its router write, the
    state file is the old one or the new one, whole, and the restart completes the raise, which the
    merged commit allowed, and opens no PR."""
    start_good_bot(ops)
    setup = ops.controller(holder="setup")
    assert setup.reconcile_once().outcomes[0].pr is not None
    assert setup.release_lease()
    [pr] = ops.forge.list()
    ops.forge.approve(pr.number, by="reviewer")
    ops.forge.merge(pr.number, message=pr.title)
    assert merged_weight(ops, "good-bot") == 10
    table_row.update(scenario="apply a merged step (10%)", point=point)
    run_until_killed(ops, point)
    table_row["killed"] = describe(ops, "good")
    assert_consistent(ops, "good-bot", "good")

    restart = reconcile_once(ops)
    table_row["restart"] = describe(ops, "good")
    assert_converged(ops, "good-bot", "good", restart)
    state = live(ops, "good")
    assert state is not None and state.weight("canary") == 10 and state.shadow == 0
    assert [p.state for p in ops.forge.list()] == [forge_base.PRState.MERGED]
    assert "router local: set" in restart[1] or point != cutpoints.STATE_TEMP, restart[1]
    table_row["outcome"] = "ok"

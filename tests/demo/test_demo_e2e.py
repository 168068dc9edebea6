"""The README's main command, end to end on real Envoy, Prometheus and the stand-in models."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import git
import httpx
import pytest

from controller import demo

pytestmark = pytest.mark.slow
CHECKOUT = Path(__file__).parent.parent.parent


def test_a_good_canary_is_promoted_step_by_step_and_completes() -> None:
    out = io.StringIO()
    result = demo.run("good", checkout=CHECKOUT, out=out)
    text = out.getvalue()
    assert result.completed, text
    assert not result.rolled_back
    # one merged PR per step (25%, 50%, 100%), then the completion and the decommission
    assert [t.split(": ", 1)[1].split(" (")[0] for t in result.merged] == [
        "advance to 25%", "advance to 50%", "advance to 100%",
        "complete", "decommission",
    ]  # fmt: skip
    merges = [line for line in result.log if re.search(r" \(#\d+\)$", line)]  # a merge's subject: its PR's title
    assert len(merges) == 5 and len(result.log) == 6
    assert "$ git log --oneline main" in text and merges[0] in text  # the demo prints the audit trail
    final = git.Repo(result.repo).commit("main").tree / "rollouts" / demo.NAME / "rollout.yaml"
    spec_text = final.data_stream.read().decode()
    assert f"stable:\n    model: {demo.CANARY_MODEL}" in spec_text and "canary:" not in spec_text
    # the completion repointed Envoy's stable cluster through its CDS file: no restart, no failed request
    assert "render the bootstrap again" not in text, text
    assert result.traffic["failed"] == {} and result.traffic["errors"] == {}, result.traffic
    assert len(result.stable_hosts) == 1, text
    assert re.search(rf"never restarted, sends {demo.NAME}_stable to \S+ \({re.escape(demo.CANARY_MODEL)}\)", text), (
        text
    )


@pytest.mark.parametrize("scenario", ["regression", "errors"])
def test_a_bad_canary_is_rolled_back_in_seconds_with_a_revert_commit(scenario: str) -> None:
    out = io.StringIO()
    result = demo.run(scenario, checkout=CHECKOUT, out=out)
    text = out.getvalue()
    assert result.rolled_back and not result.completed, text
    # canary weight 0 within one scrape interval plus one analysis interval plus 2 s of the regression
    # becoming visible (visible: at the next scrape, at most one scrape interval after it began)
    bound = demo.SCRAPE + (demo.SCRAPE + demo.INTERVAL + 2)
    assert result.rollback_seconds is not None and result.rollback_seconds <= bound, text
    assert any(f" {demo.NAME}: roll back (" in line for line in result.log), result.log  # the revert's merge
    assert not result.promoted_after_rollback
    assert sum("advance" in t for t in result.merged) == 2  # 25% and 50%, nothing after the rollback


def test_feedback_only_the_users_thumbs_catch_a_canary_every_machine_metric_passes() -> None:
    """The canary answers as fast, as correctly and as cheaply as stable; its users rate down half its
    answers (stable's: one in ten). Only feedback_negative_rate fails, and the rollback names it."""
    out = io.StringIO()
    result = demo.run("feedback", checkout=CHECKOUT, out=out)
    text = out.getvalue()
    assert result.rolled_back and not result.completed, text
    assert not result.promoted_after_rollback
    [revert] = [line for line in result.log if f" {demo.NAME}: roll back (" in line]
    assert "feedback_negative_rate" in revert, revert
    [why] = [line for line in text.splitlines() if "Rollback: " in line]
    assert "feedback_negative_rate failed" in why, why
    for other in ("eval_pass_rate", "error_rate", "latency_p95", "cost_per_request"):
        assert other not in why, why  # no machine metric failed it
    rated = result.traffic["rated"]
    assert rated["canary"]["down"] > 0 and rated["stable"]["down"] > 0, result.traffic
    assert result.traffic["failed"] == {} and result.traffic["errors"] == {}, result.traffic


def test_cohorts_a_regression_only_beta_sees_is_caught_on_beta_and_rolled_back_everywhere() -> None:
    out = io.StringIO()
    result = demo.run("cohorts", checkout=CHECKOUT, out=out)
    text = out.getvalue()
    assert result.rolled_back and not result.completed, text
    assert [t.split(": ", 1)[1].split(" (")[0] for t in result.merged[:1]] == ["advance to beta 50%"], result.merged
    assert "misbehaves for the beta tier only" in text, text
    assert "in every cohort" in text, text  # the live state: no cohort and no one else gets the canary
    assert not result.promoted_after_rollback
    [revert] = [line for line in result.log if f" {demo.NAME}: roll back (" in line]
    assert "eval_pass_rate" in revert, revert
    assert "failed: maxDrop" in text and "(cohort beta, tenant_tier=beta)" in text, text  # caught on beta
    assert result.rollback_seconds is not None and result.rollback_seconds <= demo.SCRAPE * 2 + demo.INTERVAL + 2


def test_sigterm_stops_every_process_the_demo_started() -> None:
    """`kill` on the demo (a CI job cancelled, a terminal closed) must not leave Envoy, Prometheus or the
    model servers running: SIGTERM unwinds like Ctrl-C."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "demo", "--plain"],
        cwd=CHECKOUT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # until Prometheus is up: every process has started
            seen.append(line)
            if "Prometheus on " in line:
                break
        text = "".join(seen)
        envoy_admin = re.search(r"\(admin (127\.0\.0\.1:\d+)\)", text)
        prom_url = re.search(r"Prometheus on (http://\S+),", text)
        assert envoy_admin and prom_url, text
        assert httpx.get(f"http://{envoy_admin[1]}/ready", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for url in (f"http://{envoy_admin[1]}/ready", f"{prom_url[1]}/-/ready"):
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=2)

"""`rollout dashboard` as a user runs it, on a real GitOps remote (the local forge, the file router, the
session's Prometheus): the pages and their JSON show what `rollout status` shows, the timeline comes from
git, hostile commit text stays text, and looking changes nothing. Then the same pages in Debian's
Chromium (tests/helpers/browser.py): the visible content, no console error or failed request (a CSP
violation is a console error), and a screenshot that is not blank. And `rollout run --metrics-port`
serving the same pages from its own ticks."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller import cli
from controller.dashboard import server
from tests.helpers import browser, dashboard, net
from tests.helpers.gitops import ROLLOUT, GitOps, add_bad_bot

pytestmark = pytest.mark.slow
HOSTILE = "<script>alert(\"pwned\")</script> 'quoted' & <img src=x onerror=alert(1)>"


def rollout(gitops: GitOps, *argv: str) -> str:
    out = io.StringIO()
    assert cli.main([*argv, "--remote", str(gitops.remote), "--workdir", str(gitops.work / "cli")], out) == 0, (
        out.getvalue()
    )
    return out.getvalue()


def prepared(gitops: GitOps) -> None:
    """bad-bot rolled back with its revert PR #1 open; good-bot applied; a hostile commit subject on
    good-bot's file."""
    add_bad_bot(gitops)
    rollout(gitops, "reconcile", "--once")
    text = ROLLOUT.format(name="good-bot", route="good", promotion="manual") + "# a note\n"
    gitops.commit({"rollouts/good-bot/rollout.yaml": text}, HOSTILE)


def command(gitops: GitOps, *extra: str) -> list[str]:
    return ["dashboard", "--port", "0", "--refresh", "120s", "--remote", str(gitops.remote),
            "--workdir", str(gitops.work / "dash"), *extra]  # fmt: skip


def test_the_dashboard_shows_what_status_shows_and_changes_nothing(gitops: GitOps) -> None:
    prepared(gitops)
    routes_before = (gitops.work / "state" / "routes.json").read_bytes()
    prs_before = len(gitops.forge.list(state=None))
    log = gitops.work / "dashboard.log"
    with dashboard.serving(command(gitops), log=log) as base:
        assert base.startswith("http://127.0.0.1:"), "loopback unless --host says otherwise"
        overview = httpx.get(base + "/", timeout=30).text
        bad = overview.split('id="rollout-bad-bot"', 1)[1].split("</tr>", 1)[0]
        assert "RolledBack" in bad and "1/3 (shadow 100%)" in bad and "canary 0%" in bad
        assert '<span class="pr">#1 bad-bot: roll back' in bad  # the local forge's PR has no web page
        good = overview.split('id="rollout-good-bot"', 1)[1].split("</tr>", 1)[0]
        assert "Progressing" in good and "Advance" in good and "every gate passed" in good

        page = httpx.get(base + "/rollouts/bad-bot", timeout=30).text
        gates = page.split('class="gates"', 1)[1].split("</table>", 1)[0]
        assert "eval_pass_rate" in gates and 'verdict-fail">FAIL' in gates and "maxDrop 2 pts" in gates
        timeline = page.split('class="timeline"', 1)[1].split("</table>", 1)[0]
        assert "Add bad-bot" in timeline and "human" in timeline
        assert "traffic unknown: set analysis.expectedRate" in page  # status's time-to-a-decision advice

        good_page = httpx.get(base + "/rollouts/good-bot", timeout=30).text
        assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &#x27;quoted&#x27; &amp; &lt;img" in good_page
        assert "<script>alert" not in good_page and "<img" not in good_page

        shown = httpx.get(base + "/api/rollouts.json", timeout=30).json()
        by_name = {r["rollout"]: r for r in shown["rollouts"]}
        assert (by_name["bad-bot"]["phase"], by_name["bad-bot"]["stepNumber"]) == ("RolledBack", 1)
        assert by_name["bad-bot"]["pulls"][0]["number"] == 1
        one = httpx.get(base + "/api/rollouts/good-bot.json", timeout=30).json()
        assert one["timeline"][0]["subject"] == HOSTILE and one["timeline"][-1]["subject"] == "Add good-bot"
        series = httpx.get(base + "/api/rollouts/good-bot/series", timeout=30)
        assert series.status_code == 200 and "panels" in series.json()
    assert (gitops.work / "state" / "routes.json").read_bytes() == routes_before, "a look moves no weight"
    assert len(gitops.forge.list(state=None)) == prs_before, "a look opens no PR"
    assert (gitops.work / "dash" / "dashboard-clone").is_dir(), "its own clone, beside `rollout run`'s"
    assert not (gitops.work / "dash" / "clone").exists() and not (gitops.work / "dash" / "controller.lock").exists()


def test_a_remote_that_is_not_a_rollouts_repository_is_a_usage_error(tmp_path: Path) -> None:
    out = io.StringIO()
    code = cli.main(["dashboard", "--remote", str(tmp_path / "nowhere"), "--workdir", str(tmp_path / "w")], out)
    assert code != 0


def _pending(text: str) -> bool:
    """About a plots asset the page names that this checkout does not ship yet (a URL, or a console
    message naming one): its 404 is expected until the plots land; once the file exists, a failure to
    load it fails the test."""
    names = re.findall(r"/static/([A-Za-z0-9._-]+)", text)
    return bool(names) and all(not (server.STATIC / name).exists() for name in names)


def watched(page: Any) -> tuple[list[str], list[str]]:
    """The page's console errors and uncaught exceptions, and its failed requests (an answer of 400 or
    more, or none), from now on."""
    problems: list[str] = []
    failed: list[str] = []

    def console(m: Any) -> None:
        where = m.location.get("url", "")
        if m.type == "error" and not _pending(f"{m.text} {where}"):
            problems.append(f"{m.text} @ {where}")

    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: None if _pending(r.url) else failed.append(r.url))
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 and not _pending(r.url) else None)  # fmt: skip
    return problems, failed


def test_the_pages_in_a_real_browser(gitops: GitOps) -> None:
    prepared(gitops)
    with dashboard.serving(command(gitops), log=gitops.work / "dashboard.log") as base, browser.page() as page:
        problems, failed = watched(page)
        page.goto(base + "/")
        page.wait_for_selector("table.rollouts")
        bad = page.locator("#rollout-bad-bot")
        assert "RolledBack" in bad.locator("td.phase").inner_text()
        assert "canary 0%" in bad.locator("td.live").inner_text()
        assert "#1 bad-bot: roll back" in bad.locator("td.pulls").inner_text()
        good = page.locator("#rollout-good-bot")
        assert good.locator("td.phase").inner_text() == "Progressing"
        assert "Advance" in good.locator("td.next").inner_text()
        shot = page.screenshot()
        assert not problems and not failed, (problems, failed)
        _assert_drawn(shot)

        page.locator("a.rollout", has_text="bad-bot").click()
        page.wait_for_url(base + "/rollouts/bad-bot")
        gate_rows = page.locator("table.gates tbody tr")
        assert gate_rows.count() >= 1
        first = gate_rows.first.inner_text()
        assert "eval_pass_rate" in first and "FAIL" in first
        timeline = page.locator("table.timeline tbody tr")
        assert timeline.count() >= 1 and "Add bad-bot" in timeline.last.inner_text()
        assert page.locator("section#plots").get_attribute("data-src") == "/api/rollouts/bad-bot/series"
        assert page.locator("dd.phase").inner_text() == "RolledBack"
        _assert_plotted(page, base)

        page.goto(base + "/rollouts/good-bot")
        page.wait_for_selector("table.timeline")
        assert page.locator("table.timeline tbody tr").first.locator("td").nth(2).inner_text() == HOSTILE
        assert page.evaluate("window.pwned === undefined")  # the subject's script never ran
        assert not problems and not failed, (problems, failed)
        _assert_drawn(page.screenshot(full_page=True))


def _assert_plotted(page: Any, base: str) -> None:
    """The rollout page's plots, drawn from the session's real Prometheus: the eval pass rates the
    history holds (stable 90%, bad-bot's canary 85%) in the series the page fetched, and on its chart
    both variants' lines, in their colours (stable blue, canary orange)."""
    page.wait_for_selector('section#plots[data-state="drawn"]', timeout=30_000)
    panel = page.locator('div.plot-panel[data-metric="eval_pass_rate"]')
    assert panel.locator("canvas").count() == 1
    assert panel.locator(".u-legend .u-series .u-label").all_text_contents()[1:] == ["stable", "canary"]
    answer = httpx.get(base + "/api/rollouts/bad-bot/series", timeout=30).json()
    evals = next(p for p in answer["panels"] if p["metric"] == "eval_pass_rate")
    seen = {s["variant"]: {round(v, 6) for _, v in s["points"] if v is not None} for s in evals["series"]}
    assert seen == {"stable": {90.0}, "canary": {85.0}}, seen
    width, _, pixels = dashboard.png_pixels(panel.locator("canvas").screenshot())

    def near(colour: tuple[int, int, int]) -> int:
        return sum(1 for p in pixels if sum(abs(a - b) for a, b in zip(p[:3], colour, strict=True)) < 40)

    assert near((31, 111, 209)) > width // 4, "no stable line on the chart"
    assert near((232, 89, 12)) > width // 8, "no canary line on the chart"


def _assert_drawn(png: bytes) -> None:
    """A page that is drawn: the stylesheet's dark header band, and enough ink of enough colours (a
    blank or unstyled page fails)."""
    width, height, pixels = dashboard.png_pixels(png)
    header = sum(1 for p in pixels if p == (29, 36, 48))
    ink = sum(1 for p in pixels if sum(p) < 600)
    assert header > width * 20, f"no header band: {header} pixels of the header's colour"
    assert ink > width * height // 100, f"too little drawn: {ink} of {width * height} pixels"
    assert len(set(pixels)) > 20, "too few colours: a blank or broken page"


def test_run_serves_the_pages_from_its_own_ticks(gitops: GitOps) -> None:
    prepared(gitops)
    port = net.free_port()
    command = ["run", "--interval", "1h", "--metrics-port", str(port), "--remote", str(gitops.remote),
               "--workdir", str(gitops.work / "run")]  # fmt: skip
    with dashboard.serving(command, log=gitops.work / "run.log") as base:
        assert base == f"http://127.0.0.1:{port}"
        ticks = _ticks(base)
        assert ticks == 1, "one tick, the next an hour away"
        fetched = gitops.work / "run" / "clone" / ".git" / "FETCH_HEAD"  # every tick's fetch rewrites it
        before = fetched.stat().st_mtime_ns
        for path in ("/", "/rollouts/bad-bot", "/api/rollouts.json", "/api/rollouts/bad-bot.json") * 3:
            assert httpx.get(base + path, timeout=30).status_code == 200, path
        assert _ticks(base) == ticks, "a tick ran between the page loads"
        assert fetched.stat().st_mtime_ns == before, "a page load fetched: it ran a tick of its own"
        page = httpx.get(base + "/", timeout=30).text
        assert 'href="/rollouts/bad-bot"' in page and "RolledBack" in page
        assert "eval_pass_rate" in httpx.get(base + "/rollouts/bad-bot", timeout=30).text
        assert "rollout_tick_duration_seconds" in httpx.get(base + "/metrics", timeout=30).text
        assert httpx.post(base + "/", timeout=30).status_code == 405
        assert re.search(
            r"metrics on http://127\.0\.0\.1:\d+/metrics, dashboard on", (gitops.work / "run.log").read_text()
        )


def _ticks(base: str) -> float:
    """The loop's ticks so far, from its own /metrics."""
    found = re.search(
        r"^rollout_tick_duration_seconds_count (\S+)$", httpx.get(base + "/metrics", timeout=30).text, re.M
    )
    assert found, "no tick counter in /metrics"
    return float(found.group(1))

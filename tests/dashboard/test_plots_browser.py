"""The plots in a real browser (Debian's Chromium through playwright, tests/helpers/browser.py), under the
dashboard's Content-Security-Policy `default-src 'self'`: a page holding exactly the dashboard's plots
section and tags, served with static/ by a small site (tests/helpers/static_site.py) whose
`/api/rollouts/NAME/series` answers `series.plots()` over a real Prometheus with a known history.
Charts are drawn (canvases, legends naming stable and canary, both lines' colours on the screenshot),
an empty panel says "no data", errors are shown as text, and nothing is refused or logged as an error."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import controller.dashboard
from controller import prometheus
from controller.dashboard import series
from tests.helpers import browser, plot_history
from tests.helpers.plot_history import NOW, plot_prom  # noqa: F401
from tests.helpers.static_site import static_site

STATIC = Path(controller.dashboard.__file__).parent / "static"
START, END = datetime.fromtimestamp(NOW - 2 * 3600, UTC), datetime.fromtimestamp(NOW, UTC)
STABLE, CANARY = (0x1F, 0x6F, 0xD1), (0xE8, 0x59, 0x0C)  # plots.js's colours


def page_html(name: str) -> str:
    """The tags the dashboard's rollout page carries for the plots (the contract with its server)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name}</title>
<link rel="stylesheet" href="/static/uplot.min.css">
<script defer src="/static/uplot.iife.min.js"></script>
<script defer src="/static/plots.js"></script>
</head><body><main><h1>{name}</h1>
<section id="plots" data-src="/api/rollouts/{name}/series"></section>
</main></body></html>
"""


#: Records every Content-Security-Policy violation: an init script runs before the page's own and is
#: not subject to its policy.
WATCH_CSP = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


@pytest.fixture(scope="module")
def site(plot_prom: Any) -> Iterator[tuple[str, list[str]]]:  # noqa: F811
    metrics = prometheus.Prometheus(plot_prom.url, timeout=timedelta(seconds=30))
    down = prometheus.Prometheus("http://127.0.0.1:9", timeout=timedelta(seconds=2))

    def answer(rollout: str, client: prometheus.Prometheus | None) -> Any:
        loaded = plot_history.rollout(rollout)
        return lambda: series.plots(loaded, plot_history.CONFIG, client, start=START, end=END)

    answers = {
        "/api/rollouts/app/series": answer("r-app", metrics),
        "/api/rollouts/seg/series": answer("r-seg", metrics),
        "/api/rollouts/down/series": answer("r-app", down),
    }
    pages = {f"/rollouts/{n}": page_html(n) for n in ("app", "seg", "down", "gone")}  # gone: no /series
    try:
        with static_site(static=STATIC, pages=pages, answers=answers) as running:
            yield running
    finally:
        metrics.close()
        down.close()


@contextmanager
def visit(site: tuple[str, list[str]], name: str, *, state: str = "drawn") -> Iterator[tuple[Any, list[str]]]:
    """The page of rollout `name`, its plots drawn, and what went wrong in it (console errors, script
    errors and, when the block ends, CSP violations)."""
    url, _ = site
    with browser.page() as page:
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.add_init_script(WATCH_CSP)
        page.goto(f"{url}/rollouts/{name}")
        page.wait_for_selector(f'section#plots[data-state="{state}"]', timeout=20_000)
        yield page, problems
        problems += [f"CSP violation: {v}" for v in page.evaluate("window.__violations")]


def pixels(png: bytes) -> list[tuple[int, ...]]:
    data = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    return [tuple(data[i : i + 3]) for i in range(0, len(data), 3)]


def colour_pixels(png: bytes, colour: tuple[int, int, int], *, tolerance: int = 40) -> int:
    return sum(1 for px in pixels(png) if all(abs(a - b) <= tolerance for a, b in zip(px, colour, strict=True)))


@pytest.mark.slow
def test_every_panel_is_drawn_with_stable_and_canary(site: tuple[str, list[str]]) -> None:
    with visit(site, "app") as (page, problems):
        panels = page.locator("section#plots div.plot-panel")
        metrics = [panels.nth(i).get_attribute("data-metric") for i in range(panels.count())]
        assert metrics == ["error_rate", "latency_p95", "eval_pass_rate", "cost_per_request", "tokens_per_request"]
        for i in range(panels.count()):
            panel = panels.nth(i)
            assert panel.locator("canvas").count() == 1, metrics[i]
            labels = panel.locator(".u-legend .u-series .u-label").all_text_contents()
            assert [t for t in labels if t in ("stable", "canary")] == ["stable", "canary"], metrics[i]
        assert page.locator("section#plots h3").first.text_content() == "Error rate (%)"
        # the cursor at the right end of the error-rate chart: the legend says the last values, as written
        errors = page.locator('div.plot-panel[data-metric="error_rate"]')
        over = errors.locator(".u-over")
        box = over.bounding_box()
        over.hover(position={"x": box["width"] - 1, "y": box["height"] / 2})
        assert errors.locator(".u-legend .u-series .u-value").all_text_contents()[1:] == ["1%", "5%"]
        assert page.locator("section#plots .plots-errors").count() == 0
        assert page.locator("section#plots .plot-nodata").count() == 0
        # the lines are drawn: both colours cover a line's length on the error-rate chart, and the section
        # is far from blank
        chart = page.locator('div.plot-panel[data-metric="error_rate"] canvas').screenshot()
        assert colour_pixels(chart, STABLE) > 300 and colour_pixels(chart, CANARY) > 150
        shot = pixels(page.locator("section#plots").screenshot())
        ink = sum(1 for px in shot if px != shot[0])  # the top left corner is the background
        assert ink > len(shot) // 50, f"only {ink} of {len(shot)} pixels drawn"
    assert problems == []


@pytest.mark.slow
def test_a_panel_without_data_says_so_and_segments_get_their_own_charts(site: tuple[str, list[str]]) -> None:
    with visit(site, "seg") as (page, problems):
        empty = page.locator("div.plot-panel:has(p.plot-nodata)")
        assert [empty.nth(i).get_attribute("data-metric") for i in range(empty.count())] == [
            "error_rate",
            "latency_p95",
            "cost_per_request",
            "tokens_per_request",
        ]
        assert empty.first.locator("p.plot-nodata").text_content() == "no data"
        assert empty.first.locator("canvas").count() == 0
        charts = page.locator('div.plot-panel[data-metric="eval_pass_rate"] div.plot-chart')
        hostile = f"tenant_tier={plot_history.HOSTILE}"
        assert [charts.nth(i).get_attribute("data-segment") for i in range(charts.count())] == [
            hostile,
            "tenant_tier=free",
            "tenant_tier=pro",
        ]
        assert charts.nth(2).locator(".u-title").text_content() == "tenant_tier=pro"
        assert [charts.nth(i).locator("canvas").count() for i in range(3)] == [1, 1, 1]
        # a label's value that is markup is shown as text, never made an element
        assert charts.nth(0).locator(".u-title").text_content() == hostile
        assert page.locator("section#plots img, section#plots b").count() == 0
        assert page.title() == "seg"
    assert problems == []


@pytest.mark.slow
def test_a_prometheus_that_is_down_is_said_on_the_page(site: tuple[str, list[str]]) -> None:
    with visit(site, "down") as (page, problems):
        [error] = page.locator("section#plots ul.plots-errors li").all_text_contents()
        assert error.startswith("Error rate: Prometheus at http://127.0.0.1:9: range query failed: ConnectionError")
        assert page.locator("section#plots p.plot-nodata").count() == 5
    assert problems == []


@pytest.mark.slow
def test_a_series_url_that_fails_is_said_on_the_page(site: tuple[str, list[str]]) -> None:
    with visit(site, "gone", state="failed") as (page, problems):
        texts = page.locator("section#plots ul.plots-errors li").all_text_contents()
        assert texts == ["The plots could not be loaded: HTTP 404"]
    assert problems == ["console error: Failed to load resource: the server responded with a status of 404 (Not Found)"]

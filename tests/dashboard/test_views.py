"""The dashboard's HTML and JSON, rendered from hand-made looks: every hostile value escaped, the gate
table the same rows as the PR's, links only to a forge's http(s) pages."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller import errors, evidence, gates, load, plan, reconcile, repo, spec, traffic
from controller.dashboard import look, source, views
from controller.forge import base as forge_base
from tests.helpers import gitops as gitops_helper

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>\'&'


def snapshot(
    *outcomes: reconcile.Outcome, pulls: tuple[forge_base.PullRequest, ...] = (), **history: list[repo.Commit]
) -> source.Snapshot:
    tick = reconcile.Tick(at=NOW, sha="a" * 40, outcomes=outcomes)
    return source.Snapshot(NOW, look.Look(tick, list(pulls), load.RepoSpec(config=None), history))


def outcome(name: str = "bot", **kw: object) -> reconcile.Outcome:
    decision = plan.Decision(plan.Kind.HOLD, kw.pop("reason", "waiting"))  # type: ignore[arg-type]
    defaults: dict[str, object] = {
        "decision": decision,
        "live": traffic.RouteState({"stable": 90, "canary": 10}),
        "step": 1,
        "phase": spec.Phase.PROGRESSING,
        "step_since": NOW - timedelta(minutes=5),
    }
    return reconcile.Outcome(rollout=name, **{**defaults, **kw})  # type: ignore[arg-type]


def pull(number: int, title: str, *, rollout: str = "bot", url: str = "") -> forge_base.PullRequest:
    return forge_base.PullRequest(
        number, f"rollout/{rollout}/advance-2-abc", "main", title, "", forge_base.PRState.OPEN, url=url
    )


def evidence_row(segment_value: str, error: str | None = None) -> gates.GateEvidence:
    gate = spec.Gate.model_validate({"use": "error_rate", "max": 0.01, "onFail": "rollback"})
    seg = gates.SegmentEvidence(
        segment=(("tenant", segment_value),),
        stable=gates.Measurement(0.001, 1200),
        canary=gates.Measurement(0.04, 300),
        verdict=gates.Verdict.FAIL,
        reason=f"canary above max in {segment_value}",
        counted=True,
    )
    if error:
        return gates.GateEvidence.unmeasured("bot", gate, error)
    return gates.GateEvidence("bot", gate, "ratio", "app", "sum(x)", "5m", 100, (seg,), gates.Verdict.FAIL)


def text_of(page: str) -> str:
    """The page's text as a browser shows it, tags dropped (entities left: they are what we check)."""
    return re.sub(r"<[^>]+>", " ", page)


def test_h_escapes_everything_but_markup_built_here() -> None:
    assert views.h(HOSTILE) == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#x27;&amp;"
    built = views.tag("b", HOSTILE, title=HOSTILE)
    assert views.h(built) == built and "<script>" not in built and 'title="&lt;script&gt;' in built
    assert views.tag("section", id="plots", data_src="/x") == '<section id="plots" data-src="/x"></section>'


@pytest.mark.parametrize("where", ["reason", "error", "pull", "commit", "author"])
def test_a_hostile_value_is_text_on_every_page(where: str) -> None:
    kw: dict[str, object] = {}
    if where == "reason":
        kw["reason"] = HOSTILE
    if where == "error":
        kw.update(error=HOSTILE, adapter="router")
    pulls = (pull(7, HOSTILE),) if where == "pull" else ()
    commit = repo.Commit(
        "b" * 40, HOSTILE if where == "author" else "alice", NOW, HOSTILE if where == "commit" else "ok", merge=True
    )
    snap = snapshot(outcome(**kw), pulls=pulls, bot=[commit])
    pages = [views.overview(snap, now=NOW, refresh=10), views.rollout(snap, "bot", now=NOW, refresh=10)]
    for page in pages:
        assert page is not None
        assert "<script>" not in page and 'alert("x")' not in page
    shown = text_of(pages[0] if where in ("reason", "error", "pull") else pages[1] or "")
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#x27;&amp;" in shown


def test_the_overview_shows_phase_step_weights_time_next_and_prs() -> None:
    snap = snapshot(
        outcome(reason="step 2 needs 5m more"),
        pulls=(pull(3, "bot: advance to step 3", url="https://github.com/o/r/pull/3"),),
    )
    page = views.overview(snap, now=NOW, refresh=10)
    row = page.split('id="rollout-bot"', 1)[1].split("</tr>", 1)[0]
    assert "Progressing" in row and "stable 90%, canary 10%" in row and "5m" in row
    assert "Hold" in row and "step 2 needs 5m more" in row
    assert (
        '<a href="https://github.com/o/r/pull/3" class="pr" rel="noopener noreferrer">#3 bot: advance to step 3</a>'
        in row
    )
    assert '<a href="/rollouts/bot" class="rollout">bot</a>' in row
    assert '<meta http-equiv="refresh" content="10">' in page


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "local:#3", ""])
def test_a_pr_without_an_http_url_is_its_number_not_a_link(url: str) -> None:
    page = views.overview(snapshot(outcome(), pulls=(pull(3, "t", url=url),)), now=NOW, refresh=10)
    assert '<span class="pr">#3 t</span>' in page and "javascript:" not in page and "data:text" not in page


def test_a_failed_look_is_said_on_the_page_and_in_the_json() -> None:
    snap = source.Snapshot(NOW, error=f"could not look: {HOSTILE}")
    page = views.overview(snap, now=NOW, refresh=10)
    assert 'class="error" role="alert"' in page and "could not look: &lt;script&gt;" in page
    assert views.overview_json(snap, now=NOW)["error"] == f"could not look: {HOSTILE}"
    assert views.rollout(snap, "bot", now=NOW, refresh=10) is None


def test_the_gate_table_has_the_rows_and_cells_of_the_prs_table() -> None:
    found = (evidence_row("gold"), evidence_row(HOSTILE), evidence_row("x", error="prometheus: connection refused"))
    table = views.gate_table(found, at=NOW)
    html_rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1])
    expected = evidence.table(found)
    assert len(html_rows) == len(expected) == 3
    for cells, row in zip(html_rows, expected, strict=True):
        shown = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", cells)]
        assert shown == [views.h(c) for c in row]
    assert "&lt;script&gt;" in table and "<script>" not in table
    assert '<span class="verdict verdict-fail">FAIL</span>' in table
    header = re.findall(r"<th>(.*?)</th>", table)
    assert tuple(header) == evidence.TABLE_HEADER
    md = evidence.markdown("bot", found, at="t")  # the PR's table: the same header, the same row count
    assert "| " + " | ".join(evidence.TABLE_HEADER) + " |" in md and md.count("\n| error\\_rate |") == 3


def test_the_rollout_page_keeps_the_plots_contract_and_lists_the_timeline() -> None:
    commits = [
        repo.Commit("c" * 40, "rollout-bot", NOW, "Merge pull request #3: bot: advance", merge=True),
        repo.Commit("d" * 40, "alice", NOW - timedelta(hours=1), "Add bot", merge=False),
    ]
    page = views.rollout(snapshot(outcome("a b/c")), "a b/c", now=NOW, refresh=10)
    assert page is not None
    assert '<section id="plots" data-src="/api/rollouts/a%20b%2Fc/series"></section>' in page
    head = page.split("</head>", 1)[0]
    for asset in (
        '<link rel="stylesheet" href="/static/uplot.min.css">',
        '<script src="/static/uplot.iife.min.js" defer></script>',
        '<script src="/static/plots.js" defer></script>',
    ):
        assert asset in head
    assert page.index("<h2>Gates</h2>") < page.index('id="plots"')
    timeline = views.rollout(snapshot(outcome(), bot=commits), "bot", now=NOW, refresh=10) or ""
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", timeline.split('class="timeline"', 1)[1])
    assert len(rows) == 3  # the header and two commits, newest first
    assert "merged: Merge pull request #3" in rows[1] and "rollout-bot" in rows[1] and "alice" in rows[2]


def test_no_inline_script_or_style_anywhere() -> None:
    snap = snapshot(outcome(), pulls=(pull(1, "x"),))
    for page in (views.overview(snap, now=NOW, refresh=10), views.rollout(snap, "bot", now=NOW, refresh=10) or ""):
        assert re.search(r"<script(?![^>]*\bsrc=)", page) is None  # every script is a file of ours
        assert re.search(r"\son\w+=", page) is None and "style=" not in page and "<style" not in page


def test_the_json_carries_the_status_shape_and_more() -> None:
    snap = snapshot(outcome(), pulls=(pull(3, "adv", url="https://x/3"),))
    shown = views.overview_json(snap, now=NOW)
    [row] = shown["rollouts"]
    assert {k: row[k] for k in ("rollout", "step", "stepNumber", "phase", "decision")} == {
        "rollout": "bot", "step": 1, "stepNumber": 2, "phase": "Progressing", "decision": "Hold"
    }  # fmt: skip
    assert row["secondsInStep"] == 300 and row["pulls"] == [
        {"number": 3, "title": "adv", "url": "https://x/3", "approved": False}
    ]
    one = views.rollout_json(snap, "bot", now=NOW)
    assert one is not None and one["evidence"]["gates"] == [] and one["timeline"] == []
    json.dumps(one)  # serialisable as it is
    assert views.rollout_json(snap, "nobody", now=NOW) is None


LEAKY = "LiteLLM at http://admin:s3cret@127.0.0.1:9 did not answer"


@pytest.mark.parametrize("decided", [True, False], ids=["with-a-decision", "error-only"])
def test_an_error_quoting_a_url_with_a_password_never_shows_the_password(decided: bool) -> None:
    """An adapter's error quotes the URL it could not reach; the pages and the JSON redact it."""
    o = outcome(error=LEAKY, adapter="router", **({} if decided else {"decision": None}))
    snap = snapshot(o)
    shown = [
        views.overview(snap, now=NOW, refresh=10),
        views.rollout(snap, "bot", now=NOW, refresh=10) or "",
        json.dumps(views.overview_json(snap, now=NOW)),
        json.dumps(views.rollout_json(snap, "bot", now=NOW)),
    ]
    for text in shown:
        assert "s3cret" not in text and "http://***@127.0.0.1:9" in text


def test_a_failure_quoting_a_url_with_a_password_never_shows_the_password() -> None:
    """Why there is no newer look: a look that failed (`Cached`), a tick or its look that failed (`Published`)."""

    def take() -> look.Look:
        raise errors.RepoError("cannot fetch https://bot:ghp_token@github.com/o/r.git")

    published = source.Published()
    published.fail(LEAKY)
    for snap in (source.Cached(take, ttl=60)(), published()):
        for text in (views.overview(snap, now=NOW, refresh=10), json.dumps(views.overview_json(snap, now=NOW))):
            assert "s3cret" not in text and "ghp_token" not in text and "//***@" in text


def loaded_repo(tmp_path: Path) -> load.RepoSpec:
    """A real repository's specs, loaded as the look loads them: good-bot's three steps on a canary."""
    files = {
        "rollouts/controller.yaml": gitops_helper.CONFIG.format(prom="http://127.0.0.1:9"),
        "rollouts/good-bot/rollout.yaml": gitops_helper.ROLLOUT.format(
            name="good-bot", route="good", promotion="manual"
        ),
        "rollouts/good-bot/prompts/v1.md": "You are helpful.\n",
        "rollouts/good-bot/prompts/v2.md": "You are helpful and brief.\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    desired = load.load_repo(repo.WorkTree(tmp_path))
    assert desired.config is not None and not desired.problems, desired.problems
    return desired


@pytest.mark.parametrize("step", [0, 1, 2])
def test_a_loaded_rollout_shows_its_step_desired_steps_and_advice_with_hostile_text_as_text(
    tmp_path: Path, step: int
) -> None:
    """A real loaded rollout (not `RepoSpec(config=None)`): the step, the desired weights, the steps with
    the current one marked and the time-to-a-decision advice; every text someone else wrote (the reason,
    an error, a PR title, a commit subject and author, a segment value of the evidence) stays text."""
    desired = loaded_repo(tmp_path)
    o = outcome(
        "good-bot", step=step, reason=HOSTILE, error=HOSTILE, adapter="router", evidence=(evidence_row(HOSTILE),)
    )
    tick = reconcile.Tick(at=NOW, sha="a" * 40, outcomes=(o,))
    commit = repo.Commit("b" * 40, HOSTILE, NOW, HOSTILE, merge=False)
    seen = look.Look(tick, [pull(4, HOSTILE, rollout="good-bot")], desired, {"good-bot": [commit]})
    snap = source.Snapshot(NOW, seen)
    overview = views.overview(snap, now=NOW, refresh=10)
    page = views.rollout(snap, "good-bot", now=NOW, refresh=10)
    assert page is not None
    shown = {"step": ["1/3 (shadow 100%)", "2/3 (10%)", "3/3 (100%)"][step]}
    row = overview.split('id="rollout-good-bot"', 1)[1].split("</tr>", 1)[0]
    assert shown["step"] in row and shown["step"] in page
    assert 'class="desired"' in page and "canary" in page.split('class="desired"', 1)[1].split("</dd>", 1)[0]
    marks = re.findall(r'<li class="step-(\w+)">', page.split('class="steps"', 1)[1].split("</ol>", 1)[0])
    assert marks == [("done" if i < step else "current" if i == step else "next") for i in range(3)]
    assert "<dt>decide</dt>" in page or step == 2  # the last step (100%) has no decision left to time
    for text in (overview, page):
        assert "<script>" not in text and 'alert("x")' not in text
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#x27;&amp;"
    gates_html = page.split('class="gates"', 1)[1].split("</table>", 1)[0]
    timeline = page.split('class="timeline"', 1)[1].split("</table>", 1)[0]
    assert escaped in gates_html and escaped in timeline and escaped in text_of(row)
    one = views.rollout_json(snap, "good-bot", now=NOW)
    assert one is not None and one["plan"] == ["shadow 100%", "10%", "100%"] and one["stepText"] == shown["step"]
    assert one["timeline"][0]["subject"] == HOSTILE and one["reason"] == HOSTILE  # JSON carries the text as is

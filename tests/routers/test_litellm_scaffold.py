"""The LiteLLM path a user walks from `rollout init --router litellm --local`: a real LiteLLM proxy started
from the scaffold's own `litellm/config.yaml` (rendered once, with stable only), in front of an
OpenAI-compatible stand-in. The first canary arrives only through git and `rollout reconcile --once`:
no re-render, no restart; a real Prometheus scrapes the proxy's metrics with its master key set. A live split that is not a valid one (a stale weights file applied by hand or
over a restarted proxy's config) is healed by the next tick to what main says."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from controller import edits
from tests.helpers import litellm_proc, net, openai_standin, procs, prom
from tests.helpers.user import at_home, git, human_pr, main_file, merge, rollout

pytestmark = pytest.mark.slow
NAME = "assistant"
SPEC = f"rollouts/{NAME}/rollout.yaml"


@dataclass
class Scaffold:
    clone: Path
    weights_file: Path
    model: openai_standin.Standin
    port: int
    proxy: litellm_proc.Proxy | None = None

    def start(self) -> litellm_proc.Proxy:
        """The proxy from the repository's litellm/config.yaml, as the user starts it."""
        self.proxy = litellm_proc.launch(
            self.clone / "litellm/config.yaml",
            self.clone.parent,
            weights_file=self.weights_file,
            port=self.port,
            env={"OPENAI_API_KEY": "not-a-real-key", "OPENAI_API_BASE": self.model.api_base},
        )
        return self.proxy

    def stop(self) -> None:
        if self.proxy is not None:
            procs.stop(self.proxy.process, grace=15)
            self.proxy = None

    def live(self) -> dict[str, object]:
        """Our deployments of the model group as the proxy shows them: id -> weight."""
        assert self.proxy is not None
        return {i: w for group, i, w in self.proxy.weights() if group == NAME}


@pytest.fixture
def scaffold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scaffold]:
    missing = litellm_proc.available()
    if missing:
        pytest.skip(missing)
    home = at_home(tmp_path, monkeypatch)
    rollout("init", "team-rollouts", "--router", "litellm", "--local")
    clone = tmp_path / "team-rollouts"
    monkeypatch.chdir(clone)
    monkeypatch.setenv("ROLLOUT_REMOTE", str(tmp_path / "team-rollouts.git"))
    monkeypatch.setenv("LITELLM_MASTER_KEY", litellm_proc.MASTER_KEY)
    port = net.free_port()
    config = clone / "rollouts/controller.yaml"
    config.write_text(config.read_text().replace("http://127.0.0.1:4000", f"http://127.0.0.1:{port}"))
    git(clone, "commit", "-qam", "the proxy's port")
    git(clone, "push", "-q", "origin", "main")
    with openai_standin.standin("model") as model:
        found = Scaffold(clone, home / ".local/state/rollout/litellm-weights.json", model, port)
        try:
            yield found
        finally:
            found.stop()


def first_canary(clone: Path, weight: int) -> None:
    """The human's first PR, as the scaffold's README says: the canary uncommented (here with a first
    step big enough to see both variants answer in a few requests, in place of the shadow step and
    the 5% one), approved and merged."""
    spec = (clone / SPEC).read_text().replace("  # canary:\n", "  canary:\n").replace("  #   ", "    ")
    spec = re.sub(r"\n    - \{(shadow: 100|weight: 25), .*", "", spec).replace(
        "{weight: 5, for", f"{{weight: {weight}, for"
    )
    (clone / SPEC).write_text(spec)
    merge(human_pr(clone, f"{NAME}-v2", f"{NAME}: roll out prompt v2"))


def test_a_first_canary_reaches_the_scaffolds_proxy_without_a_render_or_a_restart(
    scaffold: Scaffold, tmp_path: Path
) -> None:
    rendered = (scaffold.clone / "litellm/config.yaml").read_text()
    assert f"id: {NAME}_canary" not in rendered  # the scaffold's proxy starts with stable only
    proxy = scaffold.start()
    assert "no canary: nothing to roll out" in rollout("reconcile", "--once")  # live is main already

    first_canary(scaffold.clone, 50)
    printed = rollout("reconcile", "--once")
    assert "set stable 50%, canary 50%, read back" in printed, printed
    assert scaffold.live() == {f"{NAME}_stable": 50, f"{NAME}_canary": 50}
    [canary] = [r for r in proxy.model_info() if r["model_info"]["id"] == f"{NAME}_canary"]
    v1, v2 = ((scaffold.clone / f"rollouts/{NAME}/prompts/{NAME}-v{n}.md").read_text() for n in (1, 2))
    assert canary["model_info"]["rollout"]["system_prompt"] == v2
    with httpx.Client(timeout=30) as client:
        answered = litellm_proc.answered_by(client, proxy.url, NAME, 40)
    assert set(answered) == {f"{NAME}_stable", f"{NAME}_canary"}, answered
    assert {s.system for s in scaffold.model.seen()} == {v1, v2}  # each deployment its variant's prompt
    assert (scaffold.clone / "litellm/config.yaml").read_text() == rendered
    assert "stable 50%, canary 50%" in rollout("status")

    # a real Prometheus scrapes the proxy (a master key set) as the README's scrape job says
    with prom.prom_server(tmp_path, data_dir=tmp_path / "data") as server:
        server.set_targets([proxy.url.removeprefix("http://")], metrics_path="/metrics/")
        expr = f'sum(litellm_deployment_total_requests_total{{model_id="{NAME}_canary"}})'
        prom.prom_poll("the canary's requests scraped", lambda: _query(server.url, expr) == answered[f"{NAME}_canary"])

    # the completion, as the controller's completion PR edits the rollout: the canary becomes stable,
    # and its old deployment leaves the proxy (it once stayed at 50 beside stable 100, an Error every tick)
    (scaffold.clone / SPEC).write_text(edits.promote_canary(main_file(scaffold.clone, SPEC)))
    # (at 50% it is a promotion whose gates this test does not feed: merged past the check, as an administrator)
    merge(human_pr(scaffold.clone, f"{NAME}-complete", f"{NAME}: complete"), force=True)
    assert "read back" in rollout("reconcile", "--once")
    assert scaffold.live() == {f"{NAME}_stable": 100}
    [stable] = [r for r in proxy.model_info() if r["model_info"]["id"] == f"{NAME}_stable"]
    assert stable["model_info"]["rollout"]["system_prompt"] == v2
    status = rollout("status")
    assert "no longer served (LiteLLM keeps nothing warm at weight 0)" in status and "kept warm" not in status


def _query(url: str, expr: str) -> float | None:
    result = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_a_split_that_is_not_valid_is_healed_to_mains_even_after_a_restart(scaffold: Scaffold) -> None:
    scaffold.start()
    rollout("reconcile", "--once")
    first_canary(scaffold.clone, 20)
    assert "set stable 80%, canary 20%" in rollout("reconcile", "--once")
    stale = {f"{NAME}_stable": {"weight": 100}, f"{NAME}_canary": {"weight": 20}}

    # by hand, a file whose weights are no split of 100: the next tick writes main's state over it
    scaffold.weights_file.write_text(json.dumps({"version": 2, "groups": {NAME: stale}}))
    net.wait_for("the proxy to apply it", lambda: scaffold.live() == {f"{NAME}_stable": 100, f"{NAME}_canary": 20})
    assert "set stable 80%, canary 20%, read back" in rollout("reconcile", "--once")
    assert scaffold.live() == {f"{NAME}_stable": 80, f"{NAME}_canary": 20}

    # the proxy restarts from a config rendered at canary 20 over a stale file that names only stable
    scaffold.stop()
    rollout("render", "litellm", "--out", "litellm/config.yaml")
    del stale[f"{NAME}_canary"]
    scaffold.weights_file.write_text(json.dumps({"version": 2, "groups": {NAME: stale}}))
    scaffold.start()
    net.wait_for("the canary the file does not name to go", lambda: scaffold.live() == {f"{NAME}_stable": 100})
    assert "set stable 80%, canary 20%, read back" in rollout("reconcile", "--once")
    assert scaffold.live() == {f"{NAME}_stable": 80, f"{NAME}_canary": 20}

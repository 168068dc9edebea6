"""A user's whole path, typed as a user types it: `rollout init --router file --local`, the first tick
(the route starts on stable), a human's first pull request that adds the canary (`git push`, `rollout pr
create`, approve, merge), the controller's ticks and each promotion PR merged through `rollout pr` until
the rollout is completed and the old stable decommissioned; then a second change whose canary fails its
error gate is rolled back, and its revert PR records it on main.

Real git, a real Prometheus scraping an application stand-in (this module's `App`) that reads the file
router's routes.json, as an application does, and sends each variant the share it says. Time in a step
is real: the human's first PR scales the scaffold's steps from hours down to seconds for the rehearsal
(the scaffold itself stays realistic), as `rollout demo` does."""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import re
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import net, prom
from tests.helpers.user import at_home, git, human_pr, main_file, merge, rollout, tick_until_pr

pytestmark = pytest.mark.slow
NAME = "assistant"
BUCKETS = [round(0.05 * k, 2) for k in range(1, 41)]  # fine enough for a 20% latency limit
MEAN_LATENCY = 0.3  # seconds, exponential, both variants
PER_TICK = 2000  # requests the application serves every tick (a tenth of a second)
EVALS_PER_TICK = 100  # online eval verdicts per variant and tick
SCALED = {  # the rehearsal's steps: seconds instead of hours
    r"for: \d+h": "for: 4s",
    r"interval: 5m": "interval: 2s",
    r"keepPreviousFor: 1h": "keepPreviousFor: 2s",
}


class App:
    """The team's application, as the metrics contract sees it: every tick it reads routes.json and
    counts requests, errors, latencies and online eval verdicts per variant with the share the route
    gives it (shadow traffic mirrored to the canary). A canary serving a prompt whose path contains
    `broken` fails a fifth of its requests. Served on /metrics for Prometheus."""

    def __init__(self, routes: Path) -> None:
        self.routes = routes
        self.counts: defaultdict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def tick(self) -> None:
        try:
            route = json.loads(self.routes.read_text())["routes"][NAME]
        except (OSError, ValueError, KeyError):
            return  # no state yet: the application serves nothing through the router
        weights, shadow = route["weights"], route.get("shadow", 0)
        served = route.get("served", {})
        for variant in ("stable", "canary"):
            live = PER_TICK * weights.get(variant, 0) / 100
            n = live + (PER_TICK * shadow / 100 if variant == "canary" else 0)
            if n == 0:
                continue
            broken = "broken" in served.get(variant, {}).get("prompt", "")
            errors = n * (0.2 if broken else 0.005)
            self.add("llm_requests_total", variant, outcome="ok", value=n - errors)
            self.add("llm_requests_total", variant, outcome="error", value=errors)
            for le in BUCKETS:
                self.add(
                    "llm_request_duration_seconds_bucket",
                    variant,
                    le=f"{le:g}",
                    value=n * (1 - math.exp(-le / MEAN_LATENCY)),
                )
            self.add("llm_request_duration_seconds_bucket", variant, le="+Inf", value=n)
            self.add("llm_eval_results_total", variant, result="pass", value=EVALS_PER_TICK * 0.9)
            self.add("llm_eval_results_total", variant, result="fail", value=EVALS_PER_TICK * 0.1)

    def add(self, metric: str, variant: str, *, value: float, **labels: str) -> None:
        key = (metric, tuple(sorted({"route": NAME, "variant": variant, **labels}.items())))
        with self.lock:
            self.counts[key] += value

    def exposition(self) -> bytes:
        with self.lock:
            lines = [
                f"{metric}{{{','.join(f'{k}={json.dumps(v)}' for k, v in labels)}}} {value:.3f}"
                for (metric, labels), value in sorted(self.counts.items())
            ]
        return ("\n".join(lines) + "\n").encode()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.tick()

    @classmethod
    @contextlib.contextmanager
    def serving(cls, routes: Path) -> Iterator[tuple[App, str]]:
        app = cls(routes)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = app.exposition()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", net.free_port()), Handler)
        threads = [threading.Thread(target=server.serve_forever), threading.Thread(target=app.run)]
        for t in threads:
            t.start()
        try:
            yield app, f"127.0.0.1:{server.server_address[1]}"
        finally:
            app.stop.set()
            server.shutdown()
            for t in threads:
                t.join()
            server.server_close()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[prom.PromServer]:
    work = tmp_path / "prometheus"
    work.mkdir()
    with prom.prom_server(work, data_dir=work / "data") as server:
        yield server


def test_from_rollout_init_to_a_completed_rollout_and_a_rollback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prometheus: prom.PromServer
) -> None:
    home = at_home(tmp_path, monkeypatch)
    rollout_file = f"rollouts/{NAME}/rollout.yaml"

    printed = rollout("init", "team-rollouts", "--router", "file", "--local")
    remote = tmp_path / "team-rollouts.git"
    assert f"export ROLLOUT_REMOTE={remote}" in printed
    clone = tmp_path / "team-rollouts"
    monkeypatch.chdir(clone)
    monkeypatch.setenv("ROLLOUT_REMOTE", str(remote))
    assert "set stable 100%" in rollout("reconcile", "--once")  # the route starts on stable

    with App.serving(home / ".local/state/rollout/routes.json") as (_app, target):
        prometheus.set_targets([target], metrics_path="/metrics")
        # the human's first PR: the canary (one prompt edit), their Prometheus, steps in seconds
        spec = (clone / rollout_file).read_text()
        spec = spec.replace("  # canary:\n", "  canary:\n").replace("  #   ", "    ")
        for pattern, scaled in SCALED.items():
            spec = re.sub(pattern, scaled, spec)
        (clone / rollout_file).write_text(spec)
        config = clone / "rollouts/controller.yaml"
        config.write_text(config.read_text().replace("http://127.0.0.1:9090", prometheus.url))
        assert rollout("validate") == "valid: no problems found\n"
        first = human_pr(clone, f"{NAME}-v2", f"{NAME}: roll out prompt v2")
        merge(first)

        for step in ("advance to 5%", "advance to 25%", "advance to 100%", "complete", "decommission"):
            merge(tick_until_pr(step))
        rollout("reconcile", "--once")
        status = rollout("status")
        assert f"{NAME}  Completed" in status and "stable 100%" in status, status  # the schema's phase
        done = main_file(clone, rollout_file)
        assert f"prompt: prompts/{NAME}-v2.md" in done.split("steps:")[0] and "canary:" not in done

        # a second change: a prompt the application breaks on; its error gate fails in the shadow step
        (clone / f"rollouts/{NAME}/prompts/{NAME}-broken.md").write_text("Answer in riddles.\n")
        canary = f"  canary:\n    model: openai/gpt-4o-mini-2024-07-18\n    prompt: prompts/{NAME}-broken.md\n"
        canary += "    params: {temperature: 0.2}\n"
        (clone / rollout_file).write_text(done.replace("  steps:", canary + "  steps:", 1))
        merge(human_pr(clone, f"{NAME}-riddles", f"{NAME}: riddles"))
        revert = tick_until_pr("roll back")
        routes = json.loads((home / ".local/state/rollout/routes.json").read_text())["routes"][NAME]
        assert routes["weights"].get("canary", 0) == 0 and routes["shadow"] == 0, routes
        merge(revert)

    recorded = main_file(clone, rollout_file)
    assert "phase: RolledBack" in recorded
    log = git(clone, "log", "--first-parent", "--merges", "--format=%s", "main")
    assert len(log.splitlines()) == 8, log  # two human PRs, five promotions, one revert
    assert all(re.search(r" \(#\d+\)$", m) and len(m) < 72 for m in log.splitlines()), log  # each its PR's title

"""The eval tests' golden set: a throwaway rollouts repository with ticket triage cases, and answer
functions for the OpenAI stand-in: a good stable model and a canary that breaks the JSON schema on
parcel tickets (and fixes one case stable gets wrong). Used by tests/evals and bench/eval_run.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers import openai_standin

STABLE = "acme/triage-2025-01-01"
CANARY = "acme/triage-2025-06-01"
ROLLOUT = "shop-triage"

# id -> (ticket, queue, urgent)
TICKETS: dict[str, tuple[str, str, bool]] = {
    "cancel-order": ("Please cancel order 1182, I ordered the wrong size.", "orders", False),
    "change-address": ("Can I change the delivery address on my order before it ships?", "orders", False),
    "lost-parcel": ("My parcel shows delivered but nothing arrived.", "shipping", False),
    "damaged-parcel": ("The parcel came crushed and the lamp inside is broken.", "shipping", False),
    "late-delivery": ("It has been three weeks and the tracking has not moved.", "shipping", False),
    "return-shoes": ("How do I send back shoes that do not fit?", "returns", False),
    "exchange": ("I want to exchange the blue shirt for a red one.", "returns", False),
    "login": ("I cannot log in, the reset email never comes.", "account", False),
    "delete-account": ("Delete my account and all my data please.", "account", False),
    "unknown-charge": ("There is a charge of 89 EUR from you that I never made!", "billing", True),
}

SCHEMA = {
    "type": "object",
    "required": ["queue", "urgent"],
    "additionalProperties": False,
    "properties": {
        "queue": {"enum": ["orders", "shipping", "returns", "billing", "account"]},
        "urgent": {"type": "boolean"},
    },
}


def golden_lines() -> list[str]:
    return [
        json.dumps(
            {
                "id": case_id,
                "messages": [{"role": "user", "content": text}],
                "checks": [
                    {"type": "json_schema", "schema": SCHEMA},
                    {"type": "json_field", "path": "queue", "equals": queue},
                ],
                "segments": {"queue": queue},
            }
        )
        for case_id, (text, queue, _urgent) in TICKETS.items()
    ]


CONTROLLER = """\
apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  local: {type: file, path: .rollout/routes.json}
"""

ROLLOUT_YAML = """\
apiVersion: rollouts/v1
kind: Rollout
metadata: {name: shop-triage}
spec:
  router: local
  route: triage
  stable: {model: %(stable)s, prompt: prompts/triage.md, params: {temperature: 0, max_tokens: 50}}
  canary: {model: %(canary)s, prompt: prompts/triage.md, params: {temperature: 0, max_tokens: 50}}
  steps:
    - {weight: 5, for: 1h, minSamples: 100}
    - {weight: 100}
  analysis:
    segments: [queue]
%(offline)s"""

PROMPT = 'Classify the ticket into one queue. Reply with JSON only: {"queue": "...", "urgent": false}\n'


def write_repo(
    root: Path, *, offline: str = "  offlineEval: {maxDrop: 5%, minCases: 5}\n", canary: str = CANARY
) -> Path:
    (root / "rollouts" / ROLLOUT / "prompts").mkdir(parents=True)
    (root / "rollouts" / ROLLOUT / "evals").mkdir()
    (root / "rollouts" / "controller.yaml").write_text(CONTROLLER)
    (root / "rollouts" / ROLLOUT / "rollout.yaml").write_text(
        ROLLOUT_YAML % {"stable": STABLE, "canary": canary, "offline": offline}
    )
    (root / "rollouts" / ROLLOUT / "prompts" / "triage.md").write_text(PROMPT)
    (root / "rollouts" / ROLLOUT / "evals" / "triage.jsonl").write_text("\n".join(golden_lines()) + "\n")
    return root


def ticket_of(messages: list[dict[str, Any]]) -> str:
    user = [m for m in messages if m["role"] == "user"]
    text = str(user[-1]["content"])
    return next(k for k, (t, _q, _u) in TICKETS.items() if t == text)


def triage(model: str, messages: list[dict[str, Any]]) -> openai_standin.Reply:
    """Deterministic per model: stable misroutes the billing ticket; the canary answers `urgent` as a
    string on parcel tickets (a schema break) but routes billing right. Any other model is perfect."""
    case_id = ticket_of(messages)
    _text, queue, urgent = TICKETS[case_id]
    if model == STABLE and queue == "billing":
        return openai_standin.Reply(json.dumps({"queue": "orders", "urgent": urgent}))
    if model == CANARY and "parcel" in case_id:
        return openai_standin.Reply(json.dumps({"queue": queue, "urgent": "no"}))
    return openai_standin.Reply(json.dumps({"queue": queue, "urgent": urgent}))

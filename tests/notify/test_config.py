"""controller.yaml's `notifications`: a webhook URL is a secret, so the file names the environment
variable that holds it; a literal URL, an unknown type or event is an error naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import errors, load, repo, spec

HEAD = "apiVersion: rollouts/v1\nkind: ControllerConfig\nrouters:\n  local: {type: file, path: routes.json}\n"


def config(tmp_path: Path, text: str) -> spec.ControllerConfig:
    (tmp_path / "rollouts").mkdir(exist_ok=True)
    (tmp_path / "rollouts" / "controller.yaml").write_text(HEAD + text)
    return load.load_config(repo.WorkTree(tmp_path))


def test_destinations_name_their_variables(tmp_path: Path) -> None:
    c = config(
        tmp_path,
        "notifications:\n"
        "  - {type: slack, urlEnv: ROLLOUT_SLACK_WEBHOOK, on: [rollback, pause]}\n"
        "  - {type: webhook, urlEnv: ROLLOUT_WEBHOOK_URL, headersEnv: ROLLOUT_WEBHOOK_HEADERS}\n",
    )
    slack, hook = c.notifications
    assert isinstance(slack, spec.SlackNotification) and slack.on == [
        spec.NotificationEvent.ROLLBACK,
        spec.NotificationEvent.PAUSE,
    ]
    assert isinstance(hook, spec.WebhookNotification) and hook.on == list(spec.NotificationEvent)
    assert hook.headers_env == "ROLLOUT_WEBHOOK_HEADERS"
    assert config(tmp_path, "").notifications == []


@pytest.mark.parametrize(
    ("entry", "line", "field", "says"),
    [
        (
            "  - type: slack\n    url: https://hooks.slack.com/services/T0/B0/x\n",
            7,
            "notifications[0].url",
            "put it in an environment variable and name that variable in `urlEnv`",
        ),
        ("  - {type: teams, urlEnv: X}\n", 6, "notifications[0].type", "expected one of 'slack', 'webhook'"),
        (
            "  - {type: slack, urlEnv: X, on: [merge]}\n",
            6,
            "notifications[0].on[0]",
            "'rollback', 'pause', 'promotion' or 'completion'",
        ),
        ("  - {type: webhook}\n", 6, "notifications[0].urlEnv", "required field is missing"),
        ("  - {type: webhook, urlEnv: 'not a name'}\n", 6, "notifications[0].urlEnv", "an environment variable name"),
    ],
    ids=["literal-url", "unknown-type", "unknown-event", "no-variable", "bad-variable-name"],
)
def test_bad_destinations_are_located(tmp_path: Path, entry: str, line: int, field: str, says: str) -> None:
    with pytest.raises(errors.SpecError) as caught:
        config(tmp_path, "notifications:\n" + entry)
    [problem] = caught.value.problems
    assert (problem.line, problem.field) == (line, field), problem
    assert says in problem.message, problem.message
    assert "hooks.slack.com" not in problem.message

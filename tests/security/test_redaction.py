"""The one redaction rule: credentials in a URL (user:password@, a token@) never reach a message."""

from __future__ import annotations

import pytest

from controller.redaction import redact


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("https://x-access-token:ghp_SECRET@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("http://user:pa%40ss@127.0.0.1:9090", "http://***@127.0.0.1:9090"),
        ("https://ghp_SECRET@github.com/o/r", "https://***@github.com/o/r"),
        (
            "fatal: unable to access 'https://u:SECRET@h/r.git/': 403; retry https://u:SECRET@h/r.git",
            "fatal: unable to access 'https://***@h/r.git/': 403; retry https://***@h/r.git",
        ),
        ("/srv/git/rollouts.git", "/srv/git/rollouts.git"),
        ("https://github.com/o/r.git", "https://github.com/o/r.git"),
        ("mail me at ops@example.com", "mail me at ops@example.com"),
    ],
)
def test_redact(text: str, want: str) -> None:
    assert redact(text) == want

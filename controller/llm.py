"""The OpenAI-compatible chat-completions adapter (httpx): retries with backoff on 429/5xx and
timeouts, bounded concurrency, and answers translated into `evals.Answer`.

Called by `controller.evalrun`. Every failure becomes `errors.EvalError` (or `EvalUnavailable`
after the last retry); httpx exceptions never escape, and the API key never appears in a message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx

from controller import errors, evals, settings

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})

Reply = evals.Answer | errors.EvalError


class Client:
    """One endpoint, e.g. `http://127.0.0.1:4000/v1` (requests go to `<url>/chat/completions`)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = settings.Timeouts.llm,
        retries: int = settings.Retries.llm_retries,
        backoff: float = settings.Retries.llm_first_wait,
        max_backoff: float = settings.Retries.llm_max_wait,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self.where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        self.retries, self.backoff, self.max_backoff, self._sleep = retries, backoff, max_backoff, sleep
        self._secret = api_key or ""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chat(self, body: dict[str, Any]) -> evals.Answer:
        """One chat completion. Raises EvalUnavailable after the last retry, EvalError otherwise."""
        what = f"chat completion for model {body.get('model')!r} at {self.where}"
        problem, wait = "", 0.0
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(min(self.max_backoff, wait))
            try:
                response = self._http.post(f"{self.url}/chat/completions", json=body)
            except httpx.TimeoutException as exc:
                problem, wait = f"timed out ({type(exc).__name__})", self.backoff * 2**attempt
                continue
            except httpx.TransportError as exc:
                problem, wait = f"could not connect ({type(exc).__name__})", self.backoff * 2**attempt
                continue
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise errors.EvalError(f"{what}: {type(exc).__name__}") from exc
            if response.status_code in RETRY_STATUS:
                problem = f"HTTP {response.status_code}"
                after = _retry_after(response)
                wait = after if after is not None else self.backoff * 2**attempt
                continue
            if response.status_code >= 400:
                text = _error_text(response)
                if self._secret:  # some servers echo the key they refused
                    text = text.replace(self._secret, "***")
                raise errors.EvalError(f"{what}: HTTP {response.status_code}: {text}")
            return parse_answer(response.content, what=what)
        attempts = self.retries + 1
        raise errors.EvalUnavailable(f"{what}: {problem} after {attempts} attempt{'s' if attempts > 1 else ''}")

    def chat_many(
        self,
        bodies: Sequence[dict[str, Any]],
        *,
        concurrency: int = 4,
        on_done: Callable[[int, Reply], None] | None = None,
    ) -> list[Reply]:
        """Every request, at most `concurrency` at a time; a failed one is its EvalError, in place."""

        def one(i: int) -> Reply:
            try:
                outcome: Reply = self.chat(bodies[i])
            except errors.EvalError as exc:
                outcome = exc
            if on_done is not None:
                on_done(i, outcome)
            return outcome

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            return list(pool.map(one, range(len(bodies))))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _error_text(response: httpx.Response) -> str:
    try:
        message = response.json().get("error", {}).get("message", "")
    except (ValueError, AttributeError):
        message = ""
    return str(message or response.text)[:200].replace("\n", " ")


def parse_answer(content: bytes, *, what: str = "chat completion") -> evals.Answer:
    """A chat-completions response -> Answer. Anything else is an EvalError that says what is wrong."""
    try:
        doc = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise errors.EvalError(f"{what}: the response is not JSON ({len(content)} bytes)") from exc
    try:
        message = doc["choices"][0]["message"]
        calls = tuple(
            evals.ToolCall(name=str(c["function"]["name"]), arguments=str(c["function"].get("arguments") or "{}"))
            for c in message.get("tool_calls") or ()
        )
        text = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise errors.EvalError(f"{what}: malformed response, no choices[0].message") from exc
    if text is not None and not isinstance(text, str):
        raise errors.EvalError(f"{what}: malformed response, message.content is not a string")
    if text is None and not calls:
        raise errors.EvalError(f"{what}: malformed response, neither content nor tool_calls")
    return evals.Answer(content=text, tool_calls=calls)

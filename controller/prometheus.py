"""The metrics adapter: instant and range queries against Prometheus's HTTP API (`/api/v1/query`,
`/api/v1/query_range`), sent with prometheus-api-client's `PrometheusConnect` over a requests session.

Called by `controller.analysis` and the dashboard's plots (`controller.dashboard.series`). It only
translates: a query and a time (or a range and a step) in, labelled samples (or series) out.
Every transport, HTTP and JSON failure becomes `errors.MetricsError`; an empty answer is an empty
list (no data), never an error and never a zero. Neither the bearer token nor a URL's password is
ever put in a message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests.auth import AuthBase
from urllib3.util.retry import Retry

from controller import errors, spec
from controller.redaction import redact

# PrometheusConnect's own default retries three times with a one-second backoff on connection errors
# and on 408/429/5xx. This adapter fails at once, like every other adapter here: the tick holds and
# the next tick asks again, so a Prometheus that is down costs one timeout, not four plus sleeps.
# This is requests' own default policy (no retry, read errors raised as they are).
_NO_RETRY = Retry(total=0, read=False)


class _Bearer(AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(***)"


class Session(requests.Session):
    """A requests session that sends a POST's parameters as a form body. `PrometheusConnect` puts the
    query in the URL's query string even for POST; a batched query names every rollout of a template
    (~85 KB at 1000 rollouts), which proxies in front of Prometheus refuse in a URL (nginx's default
    limit is 8 KB) and accept in a body. Redirects are not followed: one is an answer that is not
    Prometheus's, reported with its status."""

    def __init__(self) -> None:
        super().__init__()
        self.max_redirects = 0

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if str(method).upper() == "POST" and kwargs.get("params") and kwargs.get("data") is None:
            kwargs["data"] = kwargs.pop("params")
        return super().request(method, url, *args, **kwargs)


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float  # may be NaN (e.g. 0/0): the caller decides what that means


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and its (unix seconds, value) points, oldest first."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]  # a value may be NaN, as in `Sample`


class Prometheus:
    def __init__(
        self,
        url: str,
        *,
        session: Session | None = None,
        timeout: timedelta = timedelta(seconds=10),
        token: str | None = None,
    ) -> None:
        self.url, auth = _split_userinfo(url.rstrip("/"))  # credentials never ride in a URL that
        self.display = self.url  # urllib3 logs, or an error names: they go in the auth header instead
        token = (token or "").strip()  # a token read from a file often ends in a newline
        if any(not (" " <= ch <= "~") for ch in token):
            raise errors.MetricsError(
                f"Prometheus at {self.display}: the bearer token has characters an HTTP header cannot carry"
            )
        # the token as requests auth, not a bare header: with no auth set, requests would let a ~/.netrc
        # entry for the host replace the header
        credentials: Any = auth or (_Bearer(token) if token else None)
        session = session or Session()
        self._last: requests.Response | None = None
        session.hooks["response"].append(self._keep)
        # PrometheusConnect raises a bare message on a non-200 answer; the hook keeps the response
        # itself, so that the error can say Prometheus's own errorType and error, as it always has.
        self._connect = PrometheusConnect(
            self.url,
            headers={},
            disable_ssl=False,
            retry=_NO_RETRY,
            auth=credentials,  # basic auth from the URL, else the bearer token, else None
            session=session,
            # the same number of seconds for connecting and for each read, as httpx's timeout was;
            # the library's annotation says int; requests takes any number of seconds
            timeout=timeout.total_seconds(),  # type: ignore[arg-type]
            method="POST",  # the query in a form body (`Session`), as Prometheus's API allows
        )

    @classmethod
    def from_config(
        cls, config: spec.PrometheusConfig, *, env: Mapping[str, str], timeout: timedelta | None = None
    ) -> Prometheus:
        """The adapter for controller.yaml's `prometheus`: its URL and timeout (or `timeout`), the bearer
        token read from the variable the config names in `env` (never logged); the one way a command builds it."""
        token = env.get(config.bearer_token_env) if config.bearer_token_env else None
        return cls(config.url, timeout=timeout or config.timeout, token=token)

    def close(self) -> None:
        self._connect.close()

    def query(self, expr: str, *, at: datetime) -> list[Sample]:
        """An instant vector query evaluated at `at`."""
        what = f"Prometheus at {self.display}: query failed"
        result = self._ask(what, lambda: self._connect.custom_query(expr, params={"time": f"{at.timestamp():.3f}"}))
        try:
            return _vector(result)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise errors.MetricsError(f"{what}: malformed answer ({exc!r})") from exc

    def query_range(self, expr: str, *, start: datetime, end: datetime, step: timedelta) -> list[Series]:
        """A range query (`/api/v1/query_range`): `expr` evaluated at `start`, `start + step`, ... up to
        `end`, whole seconds (the client rounds `start` and `end`; `step` must be at least one second).
        A series has a point only where the expression had a value."""
        what = f"Prometheus at {self.display}: range query failed"
        seconds = int(step.total_seconds())
        if seconds < 1 or end < start:
            raise errors.MetricsError(
                f"{what}: the step must be at least 1s and the range must not end before it starts"
            )
        result = self._ask(what, lambda: self._connect.custom_query_range(expr, start, end, str(seconds)))
        try:
            return _matrix(result)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise errors.MetricsError(f"{what}: malformed answer ({exc!r})") from exc

    def _ask(self, what: str, call: Callable[[], Any]) -> Any:
        """`data.result` of one request, every failure translated into a `MetricsError` that says `what`."""
        self._last = None
        try:
            return call()
        except requests.TooManyRedirects as exc:
            status = exc.response.status_code if exc.response is not None else "3xx"
            raise errors.MetricsError(f"{what}: HTTP {status}, a redirect (not followed)") from exc
        except requests.JSONDecodeError as exc:  # a 200 answer that is not JSON
            raise errors.MetricsError(f"{what}: HTTP {self._status()}, not JSON") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise errors.MetricsUnavailable(f"{what}: {type(exc).__name__}: {redact(_cause(exc))}") from exc
        except requests.RequestException as exc:
            raise errors.MetricsError(f"{what}: {type(exc).__name__}: {redact(_cause(exc))}") from exc
        except PrometheusApiClientException as exc:
            raise self._refused(what) from exc
        except (KeyError, TypeError) as exc:  # a 200 answer without data.result
            raise errors.MetricsError(f"{what}: HTTP {self._status()}, unexpected answer") from exc

    def _keep(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        self._last = response

    def _status(self) -> int | str:
        return self._last.status_code if self._last is not None else "?"

    def _refused(self, what: str) -> errors.MetricsError:
        """The error for a non-200 answer: Prometheus's errorType and error when it sent them."""
        status = self._status()
        try:
            body: Any = json.loads(self._last.content) if self._last is not None else None
        except ValueError:
            return errors.MetricsError(f"{what}: HTTP {status}, not JSON")
        if not isinstance(body, dict):
            return errors.MetricsError(f"{what}: HTTP {status}, unexpected answer")
        kind, message = body.get("errorType", "error"), body.get("error", "no message")
        return errors.MetricsError(f"{what}: HTTP {status}, {kind}: {message}")


def _vector(result: Any) -> list[Sample]:
    """`data.result` of an instant query (the library hands over only that, not `resultType`)."""
    if not isinstance(result, list):
        raise ValueError(f"expected a vector, got {type(result).__name__}")
    out = []
    for item in result:
        if not isinstance(item, dict):
            raise ValueError("expected a vector, got a scalar or a string")
        if "values" in item:
            raise ValueError("expected a vector, got a matrix")
        labels = {str(k): str(v) for k, v in item["metric"].items()}
        out.append(Sample(labels, float(item["value"][1])))
    return out


def _matrix(result: Any) -> list[Series]:
    """`data.result` of a range query: a matrix, each value a number (NaN and infinities as Prometheus
    spells them)."""
    if not isinstance(result, list):
        raise ValueError(f"expected a matrix, got {type(result).__name__}")
    out = []
    for item in result:
        if not isinstance(item, dict) or "values" not in item:
            raise ValueError("expected a matrix, got a vector, a scalar or a string")
        labels = {str(k): str(v) for k, v in item["metric"].items()}
        out.append(Series(labels, tuple((float(t), float(v)) for t, v in item["values"])))
    return out


def _split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without `user:password@`, (user, password) for basic auth or None)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port is not None else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, (unquote(parts.username or ""), unquote(parts.password or ""))


def _cause(exc: requests.RequestException) -> str:
    """The underlying reason of a requests failure (`[Errno 111] Connection refused`, a timeout),
    without requests' wrapper text, which repeats the whole URL with the query in it."""
    inner = exc.args[0] if exc.args else None
    reason = getattr(inner, "reason", None)
    return str(reason if reason is not None else exc)

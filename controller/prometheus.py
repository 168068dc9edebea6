"""The metrics adapter: instant queries against Prometheus's HTTP API (`/api/v1/query`) over httpx.

Called by `controller.analysis`. It only translates: a query and a time in, labelled samples out.
Every transport, HTTP and JSON failure becomes `errors.MetricsError`; an empty answer is an empty
list (no data), never an error and never a zero. The bearer token is never put in a message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from controller import errors


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float  # may be NaN (e.g. 0/0): the caller decides what that means


class Prometheus:
    def __init__(
        self,
        url: str,
        *,
        client: httpx.Client | None = None,
        timeout: timedelta = timedelta(seconds=10),
        token: str | None = None,
    ) -> None:
        self.url, self._auth = _split_userinfo(url.rstrip("/"))  # credentials never ride in a URL that
        self.display = self.url  # httpx logs, or an error names: they go in the auth header instead
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = client or httpx.Client(timeout=timeout.total_seconds())
        self._headers = headers

    def close(self) -> None:
        self._client.close()

    def query(self, expr: str, *, at: datetime) -> list[Sample]:
        """An instant vector query evaluated at `at`."""
        what = f"Prometheus at {self.display}: query failed"
        try:
            response = self._client.post(
                f"{self.url}/api/v1/query",
                data={"query": expr, "time": f"{at.timestamp():.3f}"},
                headers=self._headers,
                auth=self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise errors.MetricsError(f"{what}: {type(exc).__name__}: {_no_secret(str(exc))}") from exc
        try:
            body: Any = response.json()
        except ValueError as exc:
            raise errors.MetricsError(f"{what}: HTTP {response.status_code}, not JSON") from exc
        if not isinstance(body, dict):
            raise errors.MetricsError(f"{what}: HTTP {response.status_code}, unexpected answer")
        if body.get("status") != "success":
            kind, message = body.get("errorType", "error"), body.get("error", "no message")
            raise errors.MetricsError(f"{what}: HTTP {response.status_code}, {kind}: {message}")
        try:
            return _vector(body["data"])
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.MetricsError(f"{what}: malformed answer ({exc!r})") from exc


def _vector(data: Any) -> list[Sample]:
    if data["resultType"] != "vector":
        raise ValueError(f"expected a vector, got {data['resultType']!r}")
    out = []
    for item in data["result"]:
        labels = {str(k): str(v) for k, v in item["metric"].items()}
        out.append(Sample(labels, float(item["value"][1])))
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


def _no_secret(text: str) -> str:
    """httpx messages carry the URL, never headers; strip any userinfo from URLs in them."""
    return re.sub(r"//[^/@\s]*@", "//", text)

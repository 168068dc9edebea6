"""The application's half of an Envoy router with `promptsPath`: serve each request as the variant Envoy picked.

Envoy splits traffic between clusters named by role; it cannot edit a JSON body. So each role's
cluster tags every request it sends upstream, mirrored (shadow) copies included, with three headers
(`x-rollout-name`, `x-rollout-variant`, `x-rollout-revision`; a client cannot forge them, Envoy
overwrites them), and the controller's Envoy router writes the *prompt bundle* (`promptsPath`): per
rollout, each revision's model, prompt text and params. This module applies the bundle:

- `apply()` is a pure function: a chat completion request (a JSON object with a `messages` list)
  tagged with a revision becomes the request that revision serves: `model` set to the variant's
  model, the variant's prompt put first as a system message (the client's own messages follow, any
  system message of its own included), each of the variant's params set (overriding the client's).
  A request without the tags, or that is not a chat completion, passes unchanged. A tagged request
  whose revision the bundle lacks is refused (`Unserved`): it is never served without its prompt.
- `PromptProxy` is a tiny HTTP proxy that does it in front of one model server (run one beside each
  server and point the router's `upstreams` at them):

      python -m controller.routers.envoy_prompts --bundle /srv/rollout/prompts.json \\
          --upstream http://127.0.0.1:8001 --listen 127.0.0.1:9001

  It answers 503 when the bundle cannot serve a tagged request, and adds `x-rollout-revision` to
  every answer it applied a variant to.

Runs beside the model server, never in the controller: it imports nothing from `controller` and only
the standard library, so it can be copied next to the server. The controller's `routers/envoy.py`
imports its names and format, so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

FORMAT_VERSION = 1
NAME_HEADER = "x-rollout-name"  # the rollout
VARIANT_HEADER = "x-rollout-variant"  # the role: stable or canary
REVISION_HEADER = "x-rollout-revision"  # the variant's content hash: the bundle's key
#: Headers that belong to one connection, not to the request: never forwarded by the proxy.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers"}
    | {"transfer-encoding", "upgrade", "content-length"}
)  # Host is kept: a mirrored request's `<host>-shadow` still tells the model server it is a shadow


class Unserved(Exception):
    """A tagged request that the bundle cannot serve (no bundle, no such rollout or revision)."""


@dataclass(frozen=True)
class Variant:
    """What one revision serves, as the bundle says."""

    rollout: str
    revision: str
    model: str
    prompt_text: str | None
    params: Mapping[str, Any]


def lookup(bundle: Mapping[str, Any] | None, headers: Mapping[str, str]) -> Variant | None:
    """The variant a request's tags name; None for an untagged request. Raises Unserved when the
    request is tagged but the bundle does not hold its revision. `headers` keys are lower-case."""
    rollout = headers.get(NAME_HEADER)
    if rollout is None:
        return None
    revision = headers.get(REVISION_HEADER, "")
    if bundle is None:
        raise Unserved(f"rollout {rollout!r} revision {revision!r}: no prompt bundle could be read")
    entry = ((bundle.get("rollouts") or {}).get(rollout) or {}).get("revisions", {}).get(revision)
    if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
        raise Unserved(f"rollout {rollout!r} revision {revision!r} is not in the prompt bundle")
    text = entry.get("promptText")
    params = entry.get("params") or {}
    if (text is not None and not isinstance(text, str)) or not isinstance(params, dict):
        raise Unserved(f"rollout {rollout!r} revision {revision!r}: malformed bundle entry")
    return Variant(rollout, revision, entry["model"], text, params)


def apply(body: bytes, variant: Variant | None) -> bytes:
    """The request body `variant` serves (see the module docstring); `body` itself when there is no
    variant or the body is not a chat completion request."""
    if variant is None:
        return body
    try:
        request = json.loads(body)
    except ValueError:
        return body
    if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
        return body
    request["model"] = variant.model
    if variant.prompt_text is not None:
        request["messages"] = [{"role": "system", "content": variant.prompt_text}, *request["messages"]]
    request.update(variant.params)
    return json.dumps(request, ensure_ascii=False).encode()


def validate(document: Any) -> dict[str, Any]:
    """The bundle document, or ValueError saying why it is not one this module reads."""
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise ValueError(f"not a prompt bundle of version {FORMAT_VERSION}")
    if not isinstance(document.get("rollouts"), dict):
        raise ValueError("the prompt bundle has no 'rollouts' object")
    return document


class Bundle:
    """The bundle file, parsed again only when it changed (the router replaces it atomically, so a new
    inode, size or mtime). A file that is missing or malformed reads as None: tagged requests are then
    refused, never served without their prompt."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._key: tuple[int, int, int] | None = None
        self._document: dict[str, Any] | None = None
        self.problem = ""

    def get(self) -> dict[str, Any] | None:
        with self._lock:
            try:
                st = os.stat(self.path)
            except OSError as exc:
                self._key, self._document, self.problem = None, None, f"cannot read {self.path}: {exc.strerror}"
                return None
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if key != self._key:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        self._document, self.problem = validate(json.load(f)), ""
                except (OSError, ValueError) as exc:
                    self._document, self.problem = None, f"{self.path}: {exc}"
                self._key = key
            return self._document


# -- the proxy ---------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    server: PromptProxy
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _forward(self) -> None:
        body = self._body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            variant = lookup(self.server.bundle.get(), headers)
        except Unserved as exc:
            why = f"{exc}{'; ' + self.server.bundle.problem if self.server.bundle.problem else ''}"
            self._error(503, why)
            return
        body = apply(body, variant)
        forward = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        forward["Content-Length"] = str(len(body))
        for attempt in (1, 2):
            connection = self.server.connection()
            reused = connection.sock is not None
            try:
                connection.request(self.command, self.path, body=body, headers=forward)
                response = connection.getresponse()
                break
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                self.server.forget()
                if reused and attempt == 1:
                    continue  # the server closed an idle kept-alive connection: once more on a new one
                self._error(502, f"the model server at {self.server.upstream} did not answer ({type(exc).__name__})")
                return
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        if variant is not None:
            self.send_header(REVISION_HEADER, variant.revision)
        length = response.getheader("content-length")
        if response.status in (204, 304) or self.command == "HEAD":
            self.end_headers()
        elif length is not None:
            self.send_header("Content-Length", length)
            self.end_headers()
            self.wfile.write(response.read())
        else:  # a stream (server-sent events): pass each piece on as it comes
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while chunk := response.read1(65536):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        if response.will_close:
            connection.close()
            self.server.forget()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers, up to the blank line
                pass
            return b"".join(parts)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _error(self, status: int, message: str) -> None:
        data = json.dumps({"error": {"message": message, "type": "rollout_prompt_bundle"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class PromptProxy(http.server.ThreadingHTTPServer):
    """Applies the bundle at `bundle_path` to each request and forwards it to `upstream` (a base URL
    such as http://127.0.0.1:8001); one kept-alive upstream connection per serving thread."""

    daemon_threads = True

    def __init__(self, bundle_path: str | os.PathLike[str], upstream: str, listen: tuple[str, int]) -> None:
        url = urlsplit(upstream)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"upstream {upstream!r} must be an http:// or https:// URL")
        super().__init__(listen, _Handler)
        self.bundle = Bundle(bundle_path)
        self.upstream = upstream
        self._url = url
        self._local = threading.local()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def connection(self) -> http.client.HTTPConnection:
        current: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if current is None:
            kind = http.client.HTTPSConnection if self._url.scheme == "https" else http.client.HTTPConnection
            current = kind(self._url.hostname or "", self._url.port, timeout=300)
            self._local.connection = current
        return current

    def forget(self) -> None:
        self._local.connection = None


@contextlib.contextmanager
def running(bundle_path: str | os.PathLike[str], upstream: str, *, host: str = "127.0.0.1") -> Iterator[PromptProxy]:
    """A proxy on `host`, a free port, in a thread, for the block (tests and the demo's stand-ins)."""
    proxy = PromptProxy(bundle_path, upstream, (host, 0))
    thread = threading.Thread(target=proxy.serve_forever, name="envoy-prompts", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m controller.routers.envoy_prompts",
        description="Serve each request tagged by Envoy as its variant (model, prompt, params) from the prompt bundle.",
    )
    p.add_argument("--bundle", required=True, help="the Envoy router's promptsPath")
    p.add_argument("--upstream", required=True, help="the model server's base URL, e.g. http://127.0.0.1:8001")
    p.add_argument("--listen", default="127.0.0.1:9001", help="host:port to listen on (port 0: any free port)")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    proxy = PromptProxy(args.bundle, args.upstream, (host or "127.0.0.1", int(port)))
    print(f"envoy_prompts on {proxy.url} -> {args.upstream} (bundle {args.bundle})", file=sys.stderr, flush=True)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

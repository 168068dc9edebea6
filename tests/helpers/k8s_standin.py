"""A stand-in Kubernetes API server for `coordination.k8s.io/v1` Leases, in a thread, for the tests of
`controller.coordination.kubernetes` (no API server can run on these machines).

It serves list (with a `labelSelector`), create, get, replace and delete of Leases, with the API server's
optimistic concurrency: one global resourceVersion counter, a replace must carry the current one (409
Conflict otherwise, and a Lease allows no unconditional update), a create of an existing name is 409
AlreadyExists. Every request body and every response body is checked against the upstream schemas
vendored in tests/fixtures/kubernetes/ (see the README there), plus the API server's own checks of these
fields (MicroTime's exact layout, names, labels, a positive duration). A request that fails them is
answered 422 and recorded in `violations`; a response that fails them is recorded too (and answered 500),
so a test that asserts no violation fails on either side's mistake.

Modes for failure tests: `hang` (accept, never answer), `fail_with` (answer every request with that
status), and `hold_writes` (the writes of one Lease wait for each other, to force a race).
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema

SCHEMA = Path(__file__).resolve().parent.parent / "fixtures" / "kubernetes" / "lease-schema.json"
GROUP = "coordination.k8s.io"
LEASE = "io.k8s.api.coordination.v1.Lease"
LEASE_LIST = "io.k8s.api.coordination.v1.LeaseList"
STATUS = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"

_PATH = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/(?P<ns>[^/]+)/leases(?:/(?P<name>[^/]+))?$")
# Go's time.Parse with RFC3339Micro ("2006-01-02T15:04:05.000000Z07:00"), as metav1.MicroTime parses it
_MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


@functools.cache
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    doc = json.loads(SCHEMA.read_text("utf-8"))
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    return {
        name: jsonschema.Draft202012Validator(
            {"$ref": f"#/$defs/{name}", "$defs": doc["$defs"]}, format_checker=checker
        )
        for name in (LEASE, LEASE_LIST, STATUS, DELETE_OPTIONS)
    }


def schema_errors(definition: str, body: Any) -> list[str]:
    """What is wrong with `body` as the upstream `definition` (a key of the vendored $defs)."""
    errors = sorted(_validators()[definition].iter_errors(body), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]


def _label_errors(labels: dict[str, Any]) -> list[str]:
    out = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        bad_prefix = bool(prefix) and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))
        if bad_prefix or len(name) > 63 or not _LABEL_NAME.match(name):
            out.append(f"metadata.labels: invalid key {key!r}")
        if not isinstance(value, str) or len(value) > 63 or (value and not _LABEL_NAME.match(value)):
            out.append(f"metadata.labels.{key}: invalid value {value!r}")
    return out


def lease_errors(body: Any) -> list[str]:
    """The schema's complaints about a Lease, then the API server's own validation of its fields."""
    found = schema_errors(LEASE, body)
    if found or not isinstance(body, dict):
        return found
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    name = meta.get("name") or ""
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        found.append(f"metadata.name: {name!r} is not a DNS subdomain")
    found += _label_errors(meta.get("labels") or {})
    for field in ("acquireTime", "renewTime"):
        value = spec.get(field)
        if value is not None and not _MICRO_TIME.match(value):
            found.append(f"spec.{field}: {value!r} does not parse as RFC3339Micro")
    duration, transitions = spec.get("leaseDurationSeconds"), spec.get("leaseTransitions")
    if duration is not None and duration <= 0:
        found.append("spec.leaseDurationSeconds: must be greater than 0")
    if transitions is not None and transitions < 0:
        found.append("spec.leaseTransitions: must be greater than or equal to 0")
    return found


def status(code: int, reason: str, message: str, *, name: str = "", causes: Sequence[str] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    details: dict[str, Any] = {"group": GROUP, "kind": "leases"}
    if name:
        details["name"] = name
    if causes:
        details["causes"] = [{"reason": "FieldValueInvalid", "message": c} for c in causes]
    out["details"] = details
    if code < 400:
        del out["message"], out["reason"]
    return out


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


def _matches(selector: str, labels: dict[str, str]) -> bool:
    """The equality-based label selector syntax: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class LeaseServer:
    """`with LeaseServer(port=...) as api:` serves on http://127.0.0.1:port until the block ends."""

    def __init__(self, *, port: int, token: str = "standin-token") -> None:
        self.port = port
        self.token = token
        self.url = f"http://127.0.0.1:{port}"
        self.violations: list[str] = []
        self.requests: list[Request] = []
        self.hang = False
        self.fail_with: int | None = None
        self._lock = threading.Lock()
        self._revision = itertools.count(1)
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._held: dict[str, threading.Barrier] = {}
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def __enter__(self) -> LeaseServer:
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="k8s-standin", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # hung handlers return
        for barrier in self._held.values():
            barrier.abort()
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # -- what tests look at and steer

    def lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._objects.get((namespace, name))
            return None if found is None else json.loads(json.dumps(found))

    def leases(self, namespace: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {n: json.loads(json.dumps(o)) for (ns, n), o in self._objects.items() if ns == namespace}

    @contextmanager
    def hold_writes(self, name: str, parties: int = 2) -> Iterator[None]:
        """The next `parties` writes (PUT, POST) of Lease `name` each wait until all of them have arrived,
        so every writer has read before any writes: a forced race."""
        self._held[name] = threading.Barrier(parties, timeout=10)
        try:
            yield
        finally:
            self._held.pop(name).abort()

    # -- the API

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if self.fail_with is not None:
            reason = {403: "Forbidden", 500: "InternalError", 503: "ServiceUnavailable"}.get(self.fail_with, "Unknown")
            return self.fail_with, status(self.fail_with, reason, f"stand-in set to answer {self.fail_with}")
        route = _PATH.match(path)
        if route is None:
            self.violations.append(f"{method} {path}: no such endpoint")
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        ns, name = route["ns"], route["name"]
        if method in ("PUT", "POST") and name is not None and name in self._held:
            with suppress(threading.BrokenBarrierError):
                self._held[name].wait()
        with self._lock:
            match method, name:
                case "GET", None:
                    return self._list(ns, (query.get("labelSelector") or [""])[0])
                case "POST", None:
                    return self._create(ns, body)
                case "GET", str():
                    found = self._objects.get((ns, name))
                    return (200, found) if found else _not_found(name)
                case "PUT", str():
                    return self._replace(ns, name, body)
                case "DELETE", str():
                    return self._delete(ns, name, body)
        self.violations.append(f"{method} {path}: method not allowed")
        return 405, status(405, "MethodNotAllowed", f"{method} is not supported")

    def _invalid(self, what: str, name: str, problems: list[str]) -> tuple[int, Any]:
        self.violations.extend(f"{what}: {p}" for p in problems)
        return 422, status(
            422, "Invalid", f'Lease.{GROUP} "{name}" is invalid: {"; ".join(problems)}', name=name, causes=problems
        )

    def _list(self, ns: str, selector: str) -> tuple[int, Any]:
        items = [
            obj
            for (space, _), obj in sorted(self._objects.items())
            if space == ns and _matches(selector, obj["metadata"].get("labels") or {})
        ]
        rv = str(next(self._revision))
        return 200, {
            "kind": "LeaseList",
            "apiVersion": f"{GROUP}/v1",
            "metadata": {"resourceVersion": rv},
            "items": items,
        }

    def _stored(self, ns: str, body: dict[str, Any], *, old: dict[str, Any] | None) -> dict[str, Any]:
        meta = dict(body.get("metadata") or {})
        meta["namespace"] = ns
        meta["resourceVersion"] = str(next(self._revision))
        meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        meta["creationTimestamp"] = (
            old["metadata"]["creationTimestamp"] if old else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        for server_only in ("generation", "deletionTimestamp", "selfLink", "managedFields"):
            meta.pop(server_only, None)
        obj = {"kind": "Lease", "apiVersion": f"{GROUP}/v1", "metadata": meta, "spec": dict(body.get("spec") or {})}
        self._objects[(ns, meta["name"])] = obj
        return obj

    def _create(self, ns: str, body: Any) -> tuple[int, Any]:
        name = ((body or {}).get("metadata") or {}).get("name", "") if isinstance(body, dict) else ""
        if problems := lease_errors(body):
            return self._invalid(f"POST {name}", name, problems)
        if (body["metadata"].get("namespace") or ns) != ns:
            self.violations.append(f"POST {name}: namespace does not match the request's")
            return 400, status(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        if body["metadata"].get("resourceVersion"):
            return self._invalid(f"POST {name}", name, ["metadata.resourceVersion: must not be set on create"])
        if (ns, name) in self._objects:
            return 409, status(409, "AlreadyExists", f'leases.{GROUP} "{name}" already exists', name=name)
        return 201, self._stored(ns, body, old=None)

    def _replace(self, ns: str, name: str, body: Any) -> tuple[int, Any]:
        if problems := lease_errors(body):
            return self._invalid(f"PUT {name}", name, problems)
        meta = body["metadata"]
        if meta.get("name") != name or (meta.get("namespace") or ns) != ns:
            self.violations.append(f"PUT {name}: the body names another object")
            return 400, status(400, "BadRequest", "the name or namespace of the object does not match the request's")
        old = self._objects.get((ns, name))
        version = meta.get("resourceVersion")
        if not version:  # a Lease's strategy allows no unconditional update
            return self._invalid(f"PUT {name}", name, ["metadata.resourceVersion: must be specified for an update"])
        if old is None:
            return _not_found(name)
        if version != old["metadata"]["resourceVersion"]:
            return 409, status(409, "Conflict", _conflict(name), name=name)
        return 200, self._stored(ns, body, old=old)

    def _delete(self, ns: str, name: str, body: Any) -> tuple[int, Any]:
        if body is not None and (problems := schema_errors(DELETE_OPTIONS, body)):
            return self._invalid(f"DELETE {name}", name, problems)
        old = self._objects.get((ns, name))
        if old is None:
            return _not_found(name)
        pre = (body or {}).get("preconditions") or {}
        if pre.get("resourceVersion") not in (None, old["metadata"]["resourceVersion"]) or pre.get("uid") not in (
            None,
            old["metadata"]["uid"],
        ):
            return 409, status(409, "Conflict", _conflict(name) + " (a precondition failed)", name=name)
        del self._objects[(ns, name)]
        answer = status(200, "", "", name=name)
        answer["details"]["uid"] = old["metadata"]["uid"]
        return 200, answer


def _not_found(name: str) -> tuple[int, Any]:
    return 404, status(404, "NotFound", f'leases.{GROUP} "{name}" not found', name=name)


def _conflict(name: str) -> str:
    return (
        f'Operation cannot be fulfilled on leases.{GROUP} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


class _Handler(BaseHTTPRequestHandler):
    api: LeaseServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no delayed-ACK stall between them

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        api = self.api
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if api.hang:
            api._stopping.wait()
            self.close_connection = True
            return
        if self.headers.get("Authorization", "").split(" ", 1)[-1] != api.token or not self.headers.get(
            "Authorization", ""
        ).lower().startswith("bearer "):
            return self._answer(401, status(401, "Unauthorized", "Unauthorized"), STATUS)
        body: Any = None
        if raw:
            # the API server reads a body without Content-Type as its first media type, JSON
            # (apiserver/pkg/endpoints/handlers/negotiation: NegotiateInputSerializerForMediaType)
            media = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
            if self.command in ("PUT", "POST", "DELETE") and media != "application/json":
                api.violations.append(f"{self.command} {parts.path}: Content-Type {self.headers.get('Content-Type')}")
                return self._answer(415, status(415, "UnsupportedMediaType", "unsupported media type"), STATUS)
            try:
                body = json.loads(raw)
            except ValueError:
                api.violations.append(f"{self.command} {parts.path}: the body is not JSON")
                return self._answer(400, status(400, "BadRequest", "the body is not JSON"), STATUS)
        elif self.command in ("PUT", "POST"):
            api.violations.append(f"{self.command} {parts.path}: no body")
            return self._answer(400, status(400, "BadRequest", "no body"), STATUS)
        query = parse_qs(parts.query)
        api.requests.append(Request(self.command, parts.path, query, body))
        code, answer = api.handle(self.command, parts.path, query, body)
        kind = {"Lease": LEASE, "LeaseList": LEASE_LIST}.get(answer.get("kind"), STATUS)
        self._answer(code, answer, kind)

    def _answer(self, code: int, body: Any, definition: str) -> None:
        if problems := schema_errors(definition, body):
            self.api.violations.extend(f"response {self.command} {self.path}: {p}" for p in problems)
            code, body = 500, status(500, "InternalError", "the stand-in built an invalid response")
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _serve


def write_kubeconfig(path: Path, *, server: str, token: str, namespace: str | None) -> Path:
    context: dict[str, Any] = {"cluster": "standin", "user": "controller"}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "standin", "cluster": {"server": server}}],
        "users": [{"name": "controller", "user": {"token": token}}],
        "contexts": [{"name": "standin", "context": context}],
        "current-context": "standin",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config), "utf-8")  # JSON is YAML: the client reads it as its kubeconfig
    return path

"""A stand-in Kubernetes API server for Istio VirtualServices and Gateway API HTTPRoutes, in a thread, for
the tests of the live mesh routers (no API server can run on these machines); the sibling of
k8s_standin.py (Leases), with whose schemas and token it checks what is Kubernetes' own.

It serves GET and server-side apply (PATCH with `application/apply-patch+yaml`) of one object, as the API
server does for a CRD: the apply needs `fieldManager`; each manager's fields are tracked (every list is
atomic, as both CRDs make `spec.http` and `spec.rules`: whoever applies one owns all of it); an apply that
changes a field another manager owns is 409 Conflict unless `force=true`, which takes the field over; a
field the manager applied before and no longer applies is removed unless another manager owns it; a
`metadata.resourceVersion` in the apply body is a precondition (409 when stale). Every request body and
every response is checked: the objects against the upstream CRD schemas (controller/routers/crds/, copied
from the CRD files, or as an older release has them: `without=`) with unknown fields refused under
`fieldValidation=Strict` (400) and dropped otherwise (Warn, the default, with a `Warning` header), istiod's admission rule that a
split's weights total more than 0 (the only weight rule since Istio 1.15, istio/istio#39544), `metadata` (with its managedFields) and Status against the Kubernetes API's own
schemas (tests/fixtures/kubernetes/). A request that fails is answered 4xx and recorded in `violations`;
a response that fails is recorded too (and answered 500).

`seed(obj, manager=...)` applies an object as another manager would (the GitOps tool applying git).
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
from ruamel.yaml import YAML

from tests.helpers import k8s_standin

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "controller" / "routers" / "crds"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
APPLY = "application/apply-patch+yaml"
KINDS = {  # (group, plural) -> (kind, the CRD schema file)
    ("networking.istio.io", "virtualservices"): ("VirtualService", "virtualservice.networking.istio.io_v1.json"),
    ("gateway.networking.k8s.io", "httproutes"): ("HTTPRoute", "httproute.gateway.networking.k8s.io_v1.json"),
}
Path_ = tuple[str, ...]


@functools.cache
def _crd(file: str) -> tuple[dict[str, Any], jsonschema.protocols.Validator]:
    schema = json.loads((CRDS / file).read_text("utf-8"))
    return schema, jsonschema.Draft4Validator(schema)


@functools.cache
def _meta() -> jsonschema.protocols.Validator:
    doc = json.loads(k8s_standin.SCHEMA.read_text("utf-8"))
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    return jsonschema.Draft202012Validator(
        {"$ref": f"#/$defs/{OBJECT_META}", "$defs": doc["$defs"]}, format_checker=checker
    )


def _unknown(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    out: list[str] = []
    if isinstance(value, dict) and "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        for key, item in value.items():
            here = f"{path}.{key}"
            if key not in schema["properties"]:
                if path or key not in ("apiVersion", "kind", "metadata"):
                    out.append(f"{here}: field not declared in schema")
                continue
            out += _unknown(schema["properties"][key], item, here)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += _unknown(schema["items"], item, f"{path}[{i}]")
    return out


def older(file: str, without: tuple[str, ...]) -> tuple[dict[str, Any], jsonschema.protocols.Validator]:
    """The CRD schema of `file` as an older release has it: without the fields `without` names, each as
    its dotted path of property names (`spec.rules.filters.requestMirror.percent`; a list's items are
    passed through)."""
    schema = copy.deepcopy(_crd(file)[0])
    for path in without:
        node = schema
        *parents, last = path.split(".")
        for part in parents:
            node = node["properties"][part]
            node = node.get("items", node)
        del node["properties"][last]
    return schema, jsonschema.Draft4Validator(schema)


def _prune(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Drop from `value`, in place, every field `schema` does not declare, as the API server prunes a
    structural schema's unknown fields; the paths dropped."""
    out: list[str] = []
    if isinstance(value, dict) and "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        for key in list(value):
            here = f"{path}.{key}"
            if key not in schema["properties"]:
                if path or key not in ("apiVersion", "kind", "metadata"):
                    del value[key]
                    out.append(here)
                continue
            out += _prune(schema["properties"][key], value[key], here)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += _prune(schema["items"], item, f"{path}[{i}]")
    return out


def object_errors(
    kind: str,
    file: str,
    obj: Any,
    *,
    partial: bool = False,
    crd: tuple[dict[str, Any], jsonschema.protocols.Validator] | None = None,
) -> list[str]:
    """What the API server says of `obj` as a `kind`: the CRD schema (`crd`, else the vendored one; a
    partial apply body is checked for unknown fields only), ObjectMeta's schema, and istiod's admission
    rules for a VirtualService (weights are relative since Istio 1.15: only a total of 0 is refused)."""
    schema, validator = crd or _crd(file)
    if not isinstance(obj, dict):
        return ["<root>: not an object"]
    found = _unknown(schema, obj, "")
    if not partial:
        found += [
            f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)
        ]
    found += [
        f"metadata.{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in _meta().iter_errors(obj.get("metadata") or {})
    ]
    if obj.get("kind") != kind:
        found.append(f"kind: must be {kind}")
    if kind == "VirtualService" and not partial and not found:
        for i, http in enumerate((obj.get("spec") or {}).get("http") or []):
            routes = http.get("route") or []
            if len(routes) > 1 and sum(r.get("weight", 0) for r in routes) <= 0:
                found.append(f"spec.http[{i}].route: total destination weight must be > 0 (istiod's webhook)")
            if http.get("mirror") is not None and http.get("mirrors"):
                found.append(f"spec.http[{i}]: cannot contain both mirror and mirrors (istiod's webhook)")
    return found


def _paths(value: Any, prefix: Path_ = ()) -> set[Path_]:
    """The leaf fields of an applied object: a map's keys recursively, a list (atomic) as one leaf."""
    if isinstance(value, dict) and value:
        return set().union(*(_paths(v, (*prefix, k)) for k, v in value.items()))
    return {prefix}


def _get(obj: Any, path: Path_) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _set(obj: dict[str, Any], path: Path_, value: Any) -> None:
    for part in path[:-1]:
        obj = obj.setdefault(part, {})
    obj[path[-1]] = copy.deepcopy(value)


def _delete(obj: dict[str, Any], path: Path_) -> None:
    for part in path[:-1]:
        obj = obj.get(part) or {}
    obj.pop(path[-1], None)


def _fields_v1(paths: set[Path_]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in paths:
        node = out
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return out


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any


class MeshServer:
    """`with MeshServer(port=...) as api:` serves on http://127.0.0.1:port until the block ends."""

    def __init__(
        self, *, port: int, token: str = "standin-token", without: dict[str, tuple[str, ...]] | None = None
    ) -> None:
        self.port, self.token, self.url = port, token, f"http://127.0.0.1:{port}"
        self.violations: list[str] = []
        # kind -> its CRD as an older release has it (`without` those fields): a cluster behind the vendored schema
        self.crds = {kind: older(file, (without or {}).get(kind, ())) for kind, file in KINDS.values()}
        self.dropped: list[str] = []  # the fields an apply without fieldValidation=Strict had pruned
        self.requests: list[Request] = []
        self.fail_with: int | None = None
        self.before_apply: Any = None  # a callable run under no lock before each apply: a concurrent edit
        self._lock = threading.Lock()
        self._revision = itertools.count(1)
        self._objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._owners: dict[tuple[str, str, str, str], dict[str, set[Path_]]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MeshServer:
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="k8s-mesh-standin", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # -- what tests look at and steer

    def seed(self, obj: dict[str, Any], *, manager: str = "argocd-controller") -> dict[str, Any]:
        """Apply `obj` as `manager` would (the GitOps tool applying git): the same checks as a request."""
        group = obj["apiVersion"].split("/")[0]
        plural = next(p for (g, p), (k, _) in KINDS.items() if g == group and k == obj["kind"])
        meta = obj["metadata"]
        code, answer = self.apply(group, plural, meta["namespace"], meta["name"], obj, manager=manager, force=True)
        assert code in (200, 201), answer
        return answer

    def object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            key = next((k for k in self._objects if k[1:] == (plural, namespace, name)), None)
            return copy.deepcopy(self._objects[key]) if key else None

    def owners(self, plural: str, namespace: str, name: str) -> dict[str, set[Path_]]:
        with self._lock:
            key = next(k for k in self._owners if k[1:] == (plural, namespace, name))
            return {m: set(p) for m, p in self._owners[key].items() if p}

    # -- the API

    def apply(
        self,
        group: str,
        plural: str,
        ns: str,
        name: str,
        body: Any,
        *,
        manager: str,
        force: bool,
        validation: str = "Strict",
        warnings: list[str] | None = None,
    ) -> tuple[int, Any]:
        """A server-side apply. `validation` is the request's fieldValidation: Strict refuses a field the
        cluster's CRD does not declare (400); Warn (the API server's default) and Ignore drop it, Warn
        with a `Warning` header each, and the request succeeds without it."""
        kind, file = KINDS[(group, plural)]
        crd = self.crds[kind]
        where = f"PATCH {plural}/{name}"
        if validation != "Strict" and isinstance(body, dict):
            body = copy.deepcopy(body)
            for path in _prune(crd[0], body, ""):
                self.dropped.append(f"{where}: {path}")
                if validation == "Warn" and warnings is not None:
                    warnings.append(f'299 - "unknown field \\"{path.lstrip(".")}\\""')
        unknown = _unknown(crd[0], body, "") if isinstance(body, dict) else []
        if unknown:
            self.violations.extend(f"{where}: {p}" for p in unknown)
            return 400, status(
                400, "BadRequest", f'{kind} "{name}": strict decoding error: {"; ".join(unknown)[:2000]}'
            )
        if problems := object_errors(kind, file, body, partial=True, crd=crd):
            return self._invalid(where, kind, name, problems)
        meta = body.get("metadata") or {}
        if meta.get("name") != name or meta.get("namespace", ns) != ns or body.get("apiVersion") != f"{group}/v1":
            self.violations.append(f"{where}: the body names another object")
            return 400, status(
                400, "BadRequest", "the name, namespace or apiVersion of the object does not match the request's"
            )
        key = (group, plural, ns, name)
        with self._lock:
            live = self._objects.get(key)
            owners = self._owners.setdefault(key, {})
            wanted = meta.get("resourceVersion")
            if wanted and (live is None or wanted != live["metadata"]["resourceVersion"]):
                return 409, status(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {plural}.{group} "{name}": the object has been modified; please apply your changes to the latest version and try again',
                )
            content = {k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")}
            applied = _paths(content) if content else set()
            new = (
                copy.deepcopy(live)
                if live
                else {"apiVersion": body["apiVersion"], "kind": kind, "metadata": {"name": name, "namespace": ns}}
            )
            conflicts = sorted(
                (m, p)
                for m, ps in owners.items()
                if m != manager
                for p in ps & applied
                if _get(new, p) != _get(content, p)
            )
            if conflicts and not force:
                said = "; ".join(f'conflict with "{m}": .{".".join(p)}' for m, p in conflicts)
                return 409, status(409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s): {said}")
            for p in owners.get(manager, set()) - applied:
                if not any(p in ps for m, ps in owners.items() if m != manager):
                    _delete(new, p)
            for p in applied:
                _set(new, p, _get(content, p))
            for m, p in conflicts:
                owners[m].discard(p)
            for label, value in (meta.get("labels") or {}).items():
                new["metadata"].setdefault("labels", {})[label] = value
            if problems := object_errors(kind, file, new, crd=crd):
                return self._invalid(where, kind, name, problems)
            old_owners = {m: set(p) for m, p in owners.items()}
            owners[manager] = applied
            if live is not None and new == live and owners == old_owners:
                return 200, copy.deepcopy(live)  # a no-op apply changes nothing, not even resourceVersion
            changed = live is None or live.get("spec") != new.get("spec")
            new["metadata"]["resourceVersion"] = str(next(self._revision))
            new["metadata"]["generation"] = (live or {}).get("metadata", {}).get("generation", 0) + (
                1 if changed else 0
            )
            new["metadata"].setdefault("uid", str(uuid.uuid4()))
            new["metadata"].setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            new["metadata"]["managedFields"] = [
                {
                    "manager": m,
                    "operation": "Apply",
                    "apiVersion": f"{group}/v1",
                    "time": now,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": _fields_v1(ps),
                }
                for m, ps in sorted(owners.items())
                if ps
            ]
            if problems := object_errors(kind, file, new, crd=crd):  # managedFields as ObjectMeta's schema says
                self._owners[key] = old_owners
                return self._invalid(where, kind, name, problems)
            self._objects[key] = new
            return (201 if live is None else 200), copy.deepcopy(new)

    def _invalid(self, where: str, kind: str, name: str, problems: list[str]) -> tuple[int, Any]:
        self.violations.extend(f"{where}: {p}" for p in problems)
        return 422, status(422, "Invalid", f'{kind} "{name}" is invalid: {"; ".join(problems)[:2000]}')

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        media: str,
        body: Any,
        warnings: list[str] | None = None,
    ) -> tuple[int, Any]:
        if self.fail_with is not None:
            return self.fail_with, status(
                self.fail_with, "ServiceUnavailable", f"stand-in set to answer {self.fail_with}"
            )
        parts = path.strip("/").split("/")
        if (
            len(parts) != 7
            or parts[0] != "apis"
            or parts[2] != "v1"
            or parts[3] != "namespaces"
            or (parts[1], parts[5]) not in KINDS
        ):
            self.violations.append(f"{method} {path}: no such endpoint")
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        group, ns, plural, name = parts[1], parts[4], parts[5], parts[6]
        if method == "GET":
            found = self.object(plural, ns, name)
            return (200, found) if found else (404, status(404, "NotFound", f'{plural}.{group} "{name}" not found'))
        if method != "PATCH":
            self.violations.append(f"{method} {path}: the controller only reads and applies")
            return 405, status(405, "MethodNotAllowed", f"{method} is not what a router does")
        if media != APPLY:
            self.violations.append(f"PATCH {path}: Content-Type {media}, not server-side apply")
            return 415, status(415, "UnsupportedMediaType", f"the controller writes by server-side apply, not {media}")
        manager = (query.get("fieldManager") or [""])[0]
        force = (query.get("force") or ["false"])[0]
        if not manager or len(manager) > 128 or not manager.isprintable():
            self.violations.append(f"PATCH {path}: fieldManager {manager!r}")
            return 400, status(400, "BadRequest", "fieldManager is required for apply requests")
        validation = (query.get("fieldValidation") or ["Warn"])[0]  # the API server's default since 1.23
        if validation not in ("Strict", "Warn", "Ignore"):
            self.violations.append(f"PATCH {path}: fieldValidation={validation!r}")
            return 400, status(400, "BadRequest", f"fieldValidation {validation!r}: must be Ignore, Warn or Strict")
        if force not in ("true", "false"):
            self.violations.append(f"PATCH {path}: force={force!r}")
            return 400, status(400, "BadRequest", "force must be a boolean")
        if callable(self.before_apply):
            self.before_apply()
        return self.apply(
            group,
            plural,
            ns,
            name,
            body,
            manager=manager,
            force=force == "true",
            validation=validation,
            warnings=warnings,
        )

    def patch_requests(self) -> Iterator[Request]:
        return (r for r in self.requests if r.method == "PATCH")


class _Handler(BaseHTTPRequestHandler):
    api: MeshServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        api = self.api
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        auth = self.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer ") or auth.split(" ", 1)[-1] != api.token:
            return self._answer(401, status(401, "Unauthorized", "Unauthorized"))
        media = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        body: Any = None
        if raw:
            try:
                body = YAML(typ="safe", pure=True).load(raw.decode("utf-8"))  # apply-patch+yaml: JSON is YAML
            except Exception:
                api.violations.append(f"{self.command} {parts.path}: the body is not YAML")
                return self._answer(400, status(400, "BadRequest", "the body is not YAML"))
        query = parse_qs(parts.query)
        api.requests.append(Request(self.command, parts.path, query, media, body))
        warnings: list[str] = []
        code, answer = api.handle(self.command, parts.path, query, media, body, warnings)
        self._answer(code, answer, warnings)

    def _answer(self, code: int, body: Any, warnings: list[str] | None = None) -> None:
        if body.get("kind") == "Status":
            problems = k8s_standin.schema_errors(k8s_standin.STATUS, body)
        else:
            group, kind = body["apiVersion"].split("/")[0], body["kind"]
            file = next(f for (g, _), (k, f) in KINDS.items() if g == group and k == kind)
            problems = object_errors(kind, file, body)
        if problems:
            self.api.violations.extend(f"response {self.command} {self.path}: {p}" for p in problems)
            code, body = 500, status(500, "InternalError", "the stand-in built an invalid response")
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for warning in warnings or []:
            self.send_header("Warning", warning)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

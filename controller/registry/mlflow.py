"""The MLflow adapter: a prompt version's template from the Prompt Registry, and the aliases of registered
models and prompts (read and set; MLflow keeps a prompt as a registered model), over MLflow's REST API
(`/api/2.0/mlflow/...`) with httpx; the `mlflow` package is never imported (it is heavy, and the server
is all we need).

Built by the CLI with the environment (a token is read from `mlflow.tokenEnv`); called by `load` through
`load.PromptRegistry` and by the reconciler's alias pass (`reconcile.aliases.Registry`). Every transport,
HTTP and JSON failure becomes `errors.RegistryError`; the token is never put in a message. Each prompt
version is asked once per `Registry` (MLflow's clients treat a version as fixed, though its REST API lets a
writer overwrite the template's tag: README "A version is not immutable"); aliases are read afresh every time.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import httpx

from controller import errors, spec

PROMPT_TEXT_TAG = "mlflow.prompt.text"  # MLflow keeps a prompt version's template in this tag
IS_PROMPT_TAG = "mlflow.prompt.is_prompt"
_MISSING_ALIAS = "Registered model alias"  # the start of MLflow's message for an alias that does not exist
_CACHED = 4096  # prompt versions remembered per process


class Registry:
    """MLflow's registries, for any `spec.MlflowConfig`; `environ` holds the tokens `tokenEnv` names."""

    def __init__(self, *, environ: Mapping[str, str], transport: httpx.BaseTransport | None = None) -> None:
        self._environ = environ
        self._transport = transport
        self._templates: dict[tuple[str, str, int], str] = {}
        self._lock = threading.Lock()

    def template(self, config: spec.MlflowConfig, name: str, version: int) -> str:
        key = (config.tracking_uri, name, version)
        with self._lock:
            if key in self._templates:
                return self._templates[key]
        what = f"prompt {name!r} version {version}"
        body = self._get(config, "model-versions/get", {"name": name, "version": str(version)}, what=what)
        tags = _tags(body.get("model_version"))
        if tags.get(IS_PROMPT_TAG) != "true" or PROMPT_TEXT_TAG not in tags:
            raise errors.RegistryError(f"{name!r} version {version} is a registered model, not a prompt")
        text = tags[PROMPT_TEXT_TAG]
        with self._lock:
            if len(self._templates) >= _CACHED:
                self._templates.clear()
            self._templates[key] = text
        return text

    def alias(self, config: spec.MlflowConfig, name: str, alias: str) -> int | None:
        """The version a registered model's or prompt's alias points at; None when the alias does not exist."""
        what = f"alias {alias!r} of {name!r}"
        try:
            body = self._get(config, "registered-models/alias", {"name": name, "alias": alias}, what=what)
        except errors.RegistryError as exc:
            # MLflow answers a missing alias with 400 INVALID_PARAMETER_VALUE "Registered model alias X not found."
            if isinstance(exc, errors.RegistryUnavailable) or _MISSING_ALIAS not in str(exc):
                raise
            return None
        version = (body.get("model_version") or {}).get("version")
        try:
            return int(str(version))
        except (TypeError, ValueError):
            raise errors.RegistryError(f"{what}: the MLflow server answered no version") from None

    def set_alias(self, config: spec.MlflowConfig, name: str, alias: str, version: int) -> None:
        """Point an alias at `version` (MLflow creates it, or moves it from wherever it was)."""
        what = f"{name!r} version {version} (for alias {alias!r})"
        payload = {"name": name, "alias": alias, "version": str(version)}
        with self._client(config) as client:
            _answer(lambda: client.post("registered-models/alias", json=payload), what=what)

    # -- HTTP ------------------------------------------------------------------------------------

    def _headers(self, config: spec.MlflowConfig) -> dict[str, str]:
        if config.token_env is None:
            return {}
        token = self._environ.get(config.token_env)
        if not token:
            raise errors.RegistryError(f"${config.token_env} (mlflow.tokenEnv) is not set")
        return {"authorization": f"Bearer {token}"}

    def _client(self, config: spec.MlflowConfig) -> httpx.Client:
        return httpx.Client(
            base_url=f"{config.tracking_uri}/api/2.0/mlflow/",
            headers=self._headers(config),
            timeout=config.timeout.total_seconds(),
            transport=self._transport,
            follow_redirects=False,
        )

    def _get(self, config: spec.MlflowConfig, path: str, params: dict[str, str], *, what: str) -> dict[str, Any]:
        with self._client(config) as client:
            return _answer(lambda: client.get(path, params=params), what=what)


def _answer(send: Any, *, what: str) -> dict[str, Any]:
    """The JSON of a 2xx answer; errors.RegistryError (or RegistryUnavailable) for anything else."""
    try:
        response: httpx.Response = send()
    except httpx.TimeoutException as exc:
        raise errors.RegistryUnavailable(f"{what}: the MLflow server did not answer in time") from exc
    except httpx.HTTPError as exc:
        raise errors.RegistryUnavailable(f"{what}: the MLflow server cannot be reached ({type(exc).__name__})") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    code, message = "", ""
    if isinstance(body, dict):
        code, message = str(body.get("error_code", "")), " ".join(str(body.get("message", "")).split())[:300]
    if response.status_code == 404 or code == "RESOURCE_DOES_NOT_EXIST":
        raise errors.RegistryError(f"{what} does not exist" + (f" ({message})" if message else ""))
    if response.status_code in (401, 403):
        raise errors.RegistryError(f"{what}: the MLflow server refused the request (HTTP {response.status_code})")
    if response.status_code >= 500:
        raise errors.RegistryUnavailable(f"{what}: the MLflow server answered HTTP {response.status_code}")
    if not response.is_success or not isinstance(body, dict):
        detail = f": {message}" if message else ""
        raise errors.RegistryError(f"{what}: the MLflow server answered HTTP {response.status_code}{detail}")
    return body


def _tags(record: Any) -> dict[str, str]:
    if not isinstance(record, dict) or not isinstance(record.get("tags", []), list):
        return {}
    return {str(t.get("key")): str(t.get("value")) for t in record.get("tags", []) if isinstance(t, dict)}

"""The rollout spec and the controller config: pydantic models, value types and revisions.

Every other module reads rollouts through these types. `controller.load` turns YAML files into
them with located errors; `rollout schema` publishes their JSON Schema into `schemas/`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import GenerateJsonSchema

API_VERSION = "rollouts/v1"

# -- value types --------------------------------------------------------------------------------

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
ROUTE_NAME = r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,125}[A-Za-z0-9])?$"
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$"
TEMPLATE_NAME = r"^[a-z][a-z0-9_]{0,62}$"
ENV_NAME = r"^[A-Z_][A-Z0-9_]{0,127}$"
UNLEASH_NAME = r"^[A-Za-z0-9_.~-]{1,100}$"  # a project, environment or context field Unleash takes in a URL
MODEL_ID = r"^[!-~]+$"  # printable ASCII: no space, no look-alike letter, no invisible character
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$"  # an HTTP field name (RFC 9110 token); no ':' pseudo-header

# -- bounds: every limit on a value of a spec or of controller.yaml (the README lists them all) -------

MAX_DURATION = timedelta(days=366)  # any duration: a step, a freeze, keepPreviousFor, an interval
MAX_TIMEOUT = timedelta(minutes=5)  # a timeout the tick waits out (Prometheus, a LiteLLM write)
MAX_THRESHOLD = 1_000_000_000  # any gate threshold, in its unit; rates are bounded by 100% on top (`load`)
MAX_RATE = 1e6  # expectedRate, requests per second
MAX_SAMPLES = 10**9  # minSamples
MAX_CASES = 10**6  # offlineEval.minCases
MAX_GATES = 20  # gates per rollout
MAX_STEPS = 50  # steps per rollout
MAX_ID = 2**63 - 1  # GitHub App and installation ids (64-bit)

# ASCII digits only: `\d` would take "٣h" as three hours.
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d))+$"
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> timedelta:
    """`90s`, `5m`, `1h30m`, `2d` -> timedelta, at most MAX_DURATION. Bare numbers are refused: the unit
    is never guessed."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not re.fullmatch(DURATION_PATTERN, value.strip()):
        raise ValueError("must be a duration such as 30s, 5m, 2h or 1h30m")
    parts = _DURATION_PART.findall(value)
    too_long = f"must be at most {format_duration(MAX_DURATION)}"
    if any(len(n.lstrip("0")) > 12 for n, _ in parts):  # never int() a number of thousands of digits
        raise ValueError(too_long)
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in parts)
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(too_long)
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    total = value.total_seconds()
    if total and total < 1:
        return f"{round(total * 1000)}ms"
    out, rest = "", int(total)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "5m", "2h", "1h30m"]}),
]


def _at_least_a_second(value: timedelta) -> timedelta:
    if value < timedelta(seconds=1):  # the gates' query window: PromQL refuses [0s]
        raise ValueError("must be at least 1s")
    return value


Interval = Annotated[Duration, AfterValidator(_at_least_a_second)]


def _timeout(value: timedelta) -> timedelta:
    if not timedelta(0) < value <= MAX_TIMEOUT:  # the tick waits it out: a longer one stalls every rollout
        raise ValueError(f"must be above 0s and at most {format_duration(MAX_TIMEOUT)}")
    return value


Timeout = Annotated[Duration, AfterValidator(_timeout)]

_THRESHOLD = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(%|ms|s)?$")
THRESHOLD_PATTERN = r"^[0-9]+(\.[0-9]+)?\s*(%|ms|s)?$"


def parse_threshold(value: object) -> float:
    """`3%` -> 0.03, `250ms` -> 0.25 (seconds), `0.2` -> 0.2. Negative, non-finite (`.nan`, `.inf`) and
    numbers above MAX_THRESHOLD are refused."""
    if isinstance(value, bool):
        raise ValueError("must be a number, a percentage such as 3%, or a duration such as 250ms")
    if isinstance(value, int) and value > MAX_THRESHOLD:  # before float(), which overflows past 1e308
        raise ValueError(f"must be at most {MAX_THRESHOLD:.0f}")
    if isinstance(value, int | float):
        number = float(max(value, -1)) if isinstance(value, int) else value  # a huge negative int is negative
    elif isinstance(value, str) and (m := _THRESHOLD.match(value.strip())):
        digits, unit = float(m.group(1)), m.group(2)
        number = {"%": digits / 100, "ms": digits / 1000}.get(unit or "", digits)
        number = min(number, MAX_THRESHOLD * 2)  # 400 digits read as inf: too large, not "infinite"
    else:
        raise ValueError("must be a number, a percentage such as 3%, or a duration such as 250ms")
    if math.isnan(number):
        raise ValueError("must be a number, not .nan")
    if math.isinf(number):
        raise ValueError(f"must be finite, not {'-' if number < 0 else ''}.inf")
    if number < 0:
        raise ValueError("must not be negative")
    if number > MAX_THRESHOLD:
        raise ValueError(f"must be at most {MAX_THRESHOLD:.0f}")
    return number


Threshold = Annotated[
    float,
    BeforeValidator(parse_threshold),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_THRESHOLD},
                {"type": "string", "pattern": THRESHOLD_PATTERN},
            ],
            "description": "A number, a percentage (`3%` = 0.03) or a duration in seconds (`250ms`).",
        }
    ),
]


_RATE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*/\s*(s|m|h|d)$")
RATE_PATTERN = r"^[0-9]+(\.[0-9]+)?\s*/\s*(s|m|h|d)$"


def parse_rate(value: object) -> float:
    """`10/s`, `600/m`, `36000/h` -> requests per second, above 0 and at most MAX_RATE. Bare numbers are
    refused: the unit is never guessed."""
    if isinstance(value, str) and (m := _RATE.match(value.strip())):
        rate = float(m.group(1)) / _UNIT_SECONDS[m.group(2)]
        if not rate > 0:
            raise ValueError("must be above zero")
        if rate > MAX_RATE:
            raise ValueError(f"must be at most {MAX_RATE:.0f}/s")
        return rate
    raise ValueError("must be a rate such as 10/s, 600/m or 36000/h")


def format_rate(value: float) -> str:
    return f"{value:g}/s"


Rate = Annotated[
    float,
    BeforeValidator(parse_rate),
    PlainSerializer(format_rate, return_type=str),
    WithJsonSchema({"type": "string", "pattern": RATE_PATTERN, "examples": ["10/s", "600/m"]}),
]


def _check_percent(value: int) -> int:
    if not 0 <= value <= 100:
        raise ValueError("must be between 0 and 100")
    return value


Percent = Annotated[
    int,
    Field(strict=True),
    AfterValidator(_check_percent),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 100}),
]

Name = Annotated[str, Field(pattern=DNS_LABEL, description="A DNS-label-like name: a-z, 0-9 and '-'.")]
RouteName = Annotated[str, Field(pattern=ROUTE_NAME)]
LabelName = Annotated[str, Field(pattern=LABEL_NAME)]
TemplateName = Annotated[str, Field(pattern=TEMPLATE_NAME)]
EnvName = Annotated[str, Field(pattern=ENV_NAME, description="The name of an environment variable.")]
HeaderName = Annotated[str, Field(pattern=HEADER_NAME, description="An HTTP header name, matched case-insensitively.")]


def _check_cron(value: str) -> str:
    from croniter import croniter  # imported here: only validation and freeze windows need it

    if len(value) > 200 or len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError("must be a 5-field cron expression such as '0 0 * * 5'")
    try:  # `0 0 30 2 *` is valid and never fires: the tick would fail on it at every hold
        origin = datetime(2000, 1, 1, tzinfo=UTC)
        croniter(value, origin).get_next(datetime)
        croniter(value, origin.replace(year=2100)).get_prev(datetime)
    except ValueError as exc:
        raise ValueError("must be a cron expression that fires (this one matches no date)") from exc
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def _check_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


Url = Annotated[str, AfterValidator(_check_url), WithJsonSchema({"type": "string", "format": "uri"})]


def _no_userinfo(value: str) -> str:
    """Refuse `user:password@` in a URL whose requests carry a token header: an HTTP client sends the
    userinfo as basic authentication in place of the token, and the URL is printed in messages."""
    if "@" in value.split("://", 1)[1].split("/", 1)[0]:
        raise ValueError("must not carry user:password@: a URL is printed in messages, and credentials go elsewhere")
    return value


def _no_password(value: str) -> str:
    """A remote with a password or token in it would put a secret in git and in every message."""
    parts = urlsplit(value) if "://" in value else None
    if parts is not None and parts.password:
        raise ValueError("has a password or token in it: give credentials through git's credential helper")
    return value


def _visible(value: str) -> str:
    """Refuse control and invisible format characters (a zero-width space, a right-to-left override): a
    model id or a path that reads as another in review."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs", "Zl", "Zp"):
            raise ValueError(f"must not contain invisible or control characters (U+{ord(ch):04X})")
    return value


Visible = Annotated[str, AfterValidator(_visible)]


def _finite_json(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    """Refuse `.nan` and `.inf` anywhere in params: JSON has no such numbers, so a request would carry
    text no API reads (iterative: the loader already bounds the depth, this never recurses)."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while stack:
        loc, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise _located(loc, f"must be a finite number, not {item}: JSON has no such number")
        if isinstance(item, dict):
            stack.extend(((*loc, str(k)), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend(((*loc, i), v) for i, v in enumerate(item))
    return value


def _words(name: str) -> str:
    """A schema title as words: `maxDrop` -> "Max drop", `RolloutSpec` -> "Rollout spec"."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.replace("_", " ")).strip()
    return spaced[:1].upper() + spaced[1:].lower()


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        use_enum_values=False,
        field_title_generator=lambda name, info: _words(info.alias or name),
        model_title_generator=lambda model: _words(model.__name__),
    )


# -- the rollout --------------------------------------------------------------------------------


PROMPT_REGISTRY = "prompts:/"  # a prompt in MLflow's Prompt Registry, as MLflow spells its URIs
_PINNED_PROMPT = re.compile(r"^prompts:/([A-Za-z0-9][A-Za-z0-9._-]{0,255})/([1-9][0-9]{0,8})$")


def registry_prompt(prompt: str) -> tuple[str, int] | None:
    """(name, version) of a pinned Prompt Registry prompt (`prompts:/support/7`); None for a prompt file."""
    found = _PINNED_PROMPT.match(prompt)
    return (found.group(1), int(found.group(2))) if found else None


def _pinned(value: str | None) -> str | None:
    """A `prompts:/` prompt names one version: an alias or "latest" could change under a revision."""
    if value is not None and value.startswith(PROMPT_REGISTRY) and registry_prompt(value) is None:
        raise ValueError(
            "a Prompt Registry prompt is `prompts:/NAME/VERSION` with a version number (`prompts:/support/7`): "
            "an alias or the latest version could change without a commit"
        )
    return value


class Variant(_Model):
    """One servable configuration: a model, a prompt (a file, or a pinned Prompt Registry version) and parameters."""

    model: str = Field(min_length=1, max_length=200, pattern=MODEL_ID, description="The model id (printable ASCII).")
    prompt: Annotated[Visible, AfterValidator(_pinned)] | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="A prompt file, relative to the rollout's directory, inside the repository; or a pinned version "
        "in MLflow's Prompt Registry, `prompts:/NAME/VERSION` (controller.yaml's `mlflow:` names the server).",
    )
    params: Annotated[dict[str, JsonValue], AfterValidator(_finite_json)] = Field(
        default_factory=dict, description="Model parameters (JSON: finite numbers only)."
    )
    model_version: int | None = Field(
        default=None,
        gt=0,
        le=MAX_ID,
        description="The model's version in MLflow's Model Registry, for `spec.aliases` naming a model; "
        "part of the revision when set, so another version is another canary.",
    )


REGISTRY_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$"  # an MLflow registered model or prompt name, as we accept it
ALIAS_NAME = r"^[A-Za-z_][A-Za-z0-9_-]{0,255}$"  # MLflow refuses `latest` and names like `v1` (version-like)


def _alias_name(value: str) -> str:
    if value.lower() == "latest" or re.fullmatch(r"[vV][0-9]+", value):
        raise ValueError("MLflow reserves `latest` and version-like names (`v1`) for itself")
    return value


class RegistryAlias(_Model):
    """An MLflow alias the controller points at the stable variant's version: a registered model's
    (`model`, the variants' `modelVersion`) or a prompt's (`prompt`, the variants' `prompts:/NAME/VERSION`)."""

    model: Annotated[str, Field(pattern=REGISTRY_NAME)] | None = Field(
        default=None, description="A registered model's name in MLflow's Model Registry."
    )
    prompt: Annotated[str, Field(pattern=REGISTRY_NAME)] | None = Field(
        default=None, description="A prompt's name in MLflow's Prompt Registry."
    )
    alias: Annotated[str, Field(pattern=ALIAS_NAME), AfterValidator(_alias_name)] = Field(
        description="The alias (`champion`, `production`)."
    )

    @model_validator(mode="after")
    def _one_of(self) -> RegistryAlias:
        if (self.model is None) == (self.prompt is None):
            raise _located(("model",), "name either `model` or `prompt`, not both and not neither")
        return self

    def version(self, variant: Variant) -> int | None:
        """The variant's version of what this alias names, or None where the variant gives none."""
        if self.model is not None:
            return variant.model_version
        pinned = registry_prompt(variant.prompt or "")
        return pinned[1] if pinned is not None and pinned[0] == self.prompt else None

    def describe(self) -> str:
        return f"model {self.model!r}" if self.model is not None else f"prompt {self.prompt!r}"


def revision(variant: Variant, prompt: bytes | None) -> str:
    """The content hash of a variant: model id, prompt bytes, params and, when set, `modelVersion` (an alias
    moves to it when the canary completes, so another version is another canary), not their spelling in YAML."""
    content: dict[str, Any] = {
        "model": variant.model,
        "prompt": hashlib.sha256(prompt).hexdigest() if prompt is not None else None,
        "params": _normalise(variant.params),
    }
    if variant.model_version is not None:  # only when set: the revisions of variants without one are unchanged
        content["modelVersion"] = variant.model_version
    canonical = json.dumps(
        content,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def same_params(a: dict[str, JsonValue], b: dict[str, JsonValue]) -> bool:
    """Whether two variants' params are one setting, as the revision sees them (1.0 and 1 are one)."""
    return bool(_normalise(a) == _normalise(b))


def _normalise(value: Any) -> Any:
    """Make equal values spell the same: 1.0 and 1 are one temperature."""
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


MAX_COHORTS = 10  # cohorts per rollout
MAX_COHORT_VALUES = 50  # values one cohort matches
COHORT_VALUE = r"^[!-~]([ -~]{0,126}[!-~])?$"  # printable ASCII, no leading or trailing space: a header's value

#: Which routers assign a user to the same variant for the life of a step (by a user id the request
#: carries), and by what; a router missing here splits request by request. The schema's descriptions and
#: the README say it from this table.
STICKY = {
    "flagd": "flagd's `fractional` buckets by the evaluation context's `targetingKey`",
    "unleash": "Unleash's flexibleRollout buckets by the router's `stickiness` (by default the user id, else the session id)",
    "file": "the routes file's reference reader (`controller.routers.file.pick`) buckets by the user id it is given",
}

CohortValue = Annotated[str, Field(pattern=COHORT_VALUE)]
#: Metric labels a cohort's attribute cannot be: the gates' own (`route`, `variant`, the Envoy and LiteLLM
#: flavours' `rollout`), a histogram's `le`, and the labels the batched queries tag their answers with.
RESERVED_COHORT_KEYS = frozenset({"route", "variant", "rollout", "le", "rollouts_part", "rollouts_group"})


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


class Cohort(_Model):
    """A group of requests picked by one request attribute: `{tenant_tier: [beta]}`. The attribute is at
    once what the router matches (an Envoy header, a flagd or Unleash context key, the file router's
    attribute) and the metric label the gates judge the cohort by (`rollout doctor` checks your metrics
    carry it)."""

    name: Name = Field(description="How steps, plans and PRs name the cohort.")
    match: dict[LabelName, Annotated[list[CohortValue], BeforeValidator(_one_or_many)]] = Field(
        min_length=1,
        max_length=1,
        description="One attribute and the values that put a request in the cohort: `{user_group: internal}` "
        "or `{tenant_tier: [beta, trial]}`. A request matching several cohorts belongs to the first listed.",
    )

    @model_validator(mode="after")
    def _values(self) -> Cohort:
        for key, values in self.match.items():
            if key in RESERVED_COHORT_KEYS or key.startswith("__"):
                raise _located(
                    ("match", key),
                    f"{key!r} names the series themselves, not a request attribute: use another label",
                )
            if not 1 <= len(values) <= MAX_COHORT_VALUES:
                raise _located(("match", key), f"must list 1 to {MAX_COHORT_VALUES} values")
            if len(set(values)) != len(values):
                raise _located(("match", key), "lists a value twice")
        return self

    @property
    def key(self) -> str:
        return next(iter(self.match))

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self.match[self.key])


class Step(_Model):
    """One stage of the ramp: either shadow traffic or a live weight, held for a time; a weight step may
    open a cohort (`cohort`) instead of widening everyone's share."""

    weight: Percent | None = Field(
        default=None,
        description="Percent of live traffic served by the canary: everyone's, or with `cohort` that cohort's.",
    )
    cohort: Name | None = Field(
        default=None,
        description="A cohort of spec.cohorts: the step sets the canary's weight within that cohort only. "
        "Cohorts opened by earlier steps keep their weight; a cohort never gets less than everyone's weight.",
    )
    shadow: Percent | None = Field(
        default=None, description="Percent of traffic mirrored to the canary; nobody sees its answers."
    )
    for_: Duration | None = Field(default=None, alias="for", description="Minimum time in this step.")
    min_samples: int | None = Field(
        default=None, ge=0, le=MAX_SAMPLES, description="Minimum canary requests before the gates can pass."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        if (self.weight is None) == (self.shadow is None):
            raise ValueError("a step sets exactly one of 'weight' or 'shadow'")
        if self.cohort is not None and self.shadow is not None:
            raise _located(("cohort",), "a shadow step mirrors everyone's traffic: a cohort step sets a weight")
        return self

    @property
    def canary_weight(self) -> int:
        """Everyone's canary weight this step sets (a cohort step sets none: see `plan.step_state`)."""
        return self.weight or 0 if self.cohort is None else 0

    def describe(self) -> str:
        if self.shadow is not None:
            return f"shadow {self.shadow}%"
        return f"{self.weight}%" if self.cohort is None else f"{self.cohort} {self.weight}%"


class OnFail(StrEnum):
    ROLLBACK = "rollback"
    PAUSE = "pause"


BUILTIN_GATES = frozenset(
    {
        "error_rate",
        "latency_p95",
        "eval_pass_rate",
        "schema_valid_rate",
        "feedback_negative_rate",
        "cost_per_request",
        "tokens_per_request",
        "ttft_p95",
        "preemptions",
        "kv_cache_usage",
    }
)

# an editor offers the built-in templates and still accepts a custom one's name
GateName = Annotated[
    TemplateName,
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": sorted(BUILTIN_GATES), "description": "A built-in gate template."},
                {
                    "type": "string",
                    "pattern": TEMPLATE_NAME,
                    "description": "A template in controller.yaml's gateTemplates.",
                },
            ]
        }
    ),
]


class Gate(_Model):
    """One promotion gate: a template, its thresholds, and what a failure does."""

    use: GateName = Field(description="A built-in gate template or one named in controller.yaml.")
    max: Threshold | None = Field(default=None, description="The canary's value must stay at or below.")
    min: Threshold | None = Field(default=None, description="The canary's value must stay at or above.")
    max_drop: Threshold | None = Field(
        default=None, description="At most this many points below stable (3% = 3 points)."
    )
    max_increase: Threshold | None = Field(
        default=None, description="At most this much above stable, relative (10% = 1.1 x stable)."
    )
    on_fail: OnFail = Field(default=OnFail.ROLLBACK)
    alpha: float | None = Field(
        default=None,
        gt=0,
        lt=0.5,
        description="Chance of failing a canary that is within its limit, over every look of a step (default 0.01).",
    )
    power: float | None = Field(
        default=None,
        ge=0.5,
        lt=1,
        description="1 - the chance of passing a canary that is beyond its limit; also the confidence "
        "of the advised step length (default 0.9).",
    )
    tolerance: Threshold | None = Field(
        default=None,
        description="The regression beyond the limit a step must be long enough to catch, in the "
        "limit's unit (default: the limit again, i.e. twice the limit).",
    )

    @model_validator(mode="after")
    def _has_threshold(self) -> Gate:
        if all(v is None for v in (self.max, self.min, self.max_drop, self.max_increase)):
            raise ValueError("a gate needs at least one of max, min, maxDrop or maxIncrease")
        return self


class ServerMetrics(StrEnum):
    """A model server whose own metrics the built-in gates can read (`analysis.metrics`)."""

    VLLM = "vllm"


class Analysis(_Model):
    interval: Interval = Field(default=timedelta(minutes=1), description="How often gates are evaluated.")
    gates: list[Gate] = Field(default_factory=list, max_length=MAX_GATES)
    segments: list[LabelName] = Field(
        default_factory=list,
        description="Metric labels whose values are judged one by one; one bad segment fails a gate.",
    )
    metrics: ServerMetrics | None = Field(
        default=None,
        description="The model server whose own metrics the built-in gates read: `vllm` reads vLLM's vllm:* "
        "series (labelled `route` and `variant` by Prometheus' scrape config) for every gate with a vLLM "
        "flavour and none for the router (the router's metrics, envoy or litellm, come first: they see "
        "every request), and allows the vLLM-only gates (ttft_p95, preemptions, kv_cache_usage). Unset: "
        "the router's metrics where a gate has them, else the application's.",
    )
    expected_rate: Rate | None = Field(
        default=None,
        description="The route's usual traffic (both variants), e.g. 10/s or 600/m. Only advises how long "
        "a step needs to reach a decision (`rollout plan`, lint R008); unset means unknown.",
    )
    traffic_split: bool = Field(
        default=True,
        description="The built-in traffic-split check: in each live step, test the canary's observed share of "
        "requests against its weight; a mismatch holds promotion (the router is not splitting as configured). "
        "false turns it off.",
    )


class FreezeWindow(_Model):
    """No promotion while a window is open; rollbacks are always allowed."""

    cron: Annotated[str, AfterValidator(_check_cron)] = Field(description="When each window opens.")
    duration: Duration
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"


class Promotion(StrEnum):
    MANUAL = "manual"
    AUTO = "auto"


class OfflineEval(_Model):
    """The offline gate: the canary's pass rate on the golden set (`evals/*.jsonl`), measured on the
    pull request against stable. The controller starts no ramp until a recorded result passes."""

    max_drop: Threshold | None = Field(
        default=None, description="At most this many points below stable's pass rate (2% = 2 points)."
    )
    min_pass_rate: Threshold | None = Field(default=None, description="The canary's pass rate must reach this.")
    min_cases: int = Field(default=1, ge=1, le=MAX_CASES, description="Fewer scored cases than this is inconclusive.")

    @model_validator(mode="after")
    def _has_threshold(self) -> OfflineEval:
        if self.max_drop is None and self.min_pass_rate is None:
            raise ValueError("offlineEval needs maxDrop or minPassRate")
        if self.max_drop is not None and self.max_drop >= 1:
            raise _located(
                ("maxDrop",), "must be below 100%: a pass rate cannot drop 100 points, so it could never fail"
            )
        if self.min_pass_rate is not None and self.min_pass_rate > 1:
            raise _located(("minPassRate",), "must be at most 100%: a pass rate never exceeds it")
        return self


class RolloutSpec(_Model):
    router: Name = Field(description="A router named in rollouts/controller.yaml.")
    route: RouteName = Field(description="What the router splits: an Envoy route, a LiteLLM model group.")
    stable: Variant
    canary: Variant | None = Field(default=None, description="The variant being rolled out, if any.")
    previous: Variant | None = Field(
        default=None,
        description="The old stable, kept warm at weight 0 after a completion; written and removed by the bot.",
    )
    cohorts: list[Cohort] = Field(
        default_factory=list,
        max_length=MAX_COHORTS,
        description="Groups of requests a step can open before everyone (internal users, a tenant tier, a "
        "region), in precedence order. Assignment within a cohort is sticky per user on "
        + ", ".join(sorted(STICKY))
        + "; on other routers that carry cohorts (Envoy) it is per request.",
    )
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    analysis: Analysis = Field(default_factory=Analysis)
    offline_eval: OfflineEval | None = Field(
        default=None, description="Gate the ramp on an offline eval of the canary's golden set."
    )
    promotion: Promotion = Promotion.MANUAL
    freeze: list[FreezeWindow] = Field(default_factory=list)
    allow_paired_change: bool = Field(default=False, description="Allow the canary to change model and prompt at once.")
    keep_previous_for: Duration = Field(
        default=timedelta(hours=1), description="How long the old stable stays warm after completion."
    )
    aliases: list[RegistryAlias] = Field(
        default_factory=list,
        max_length=16,
        description="MLflow aliases that follow the stable variant: moved to the canary's version once its "
        "completion is merged, and back if main goes back (controller.yaml's `mlflow:` names the server).",
    )

    @model_validator(mode="after")
    def _aliases_have_versions(self) -> RolloutSpec:
        seen: set[tuple[str | None, str | None, str]] = set()
        for i, a in enumerate(self.aliases):
            field = "model" if a.model is not None else "prompt"
            if (a.model, a.prompt, a.alias) in seen:
                raise _located(("aliases", i, "alias"), f"names {a.describe()} alias {a.alias!r} twice")
            seen.add((a.model, a.prompt, a.alias))
            for role in ("stable", "canary", "previous"):
                variant: Variant | None = getattr(self, role)
                if variant is not None and a.version(variant) is None:
                    needs = "a `modelVersion`" if a.model is not None else f"a prompt `prompts:/{a.prompt}/VERSION`"
                    raise _located(("aliases", i, field), f"spec.{role} needs {needs} for this alias to point at")
        return self

    @model_validator(mode="after")
    def _cohorts_known(self) -> RolloutSpec:
        names: set[str] = set()
        claimed: dict[tuple[str, str], str] = {}
        for i, cohort in enumerate(self.cohorts):
            if cohort.name in names:
                raise _located(("cohorts", i, "name"), f"names cohort {cohort.name!r} twice")
            names.add(cohort.name)
            for value in cohort.values:
                other = claimed.setdefault((cohort.key, value), cohort.name)
                if other != cohort.name:
                    raise _located(
                        ("cohorts", i, "match", cohort.key),
                        f"{cohort.key}={value} already belongs to cohort {other!r}: a request belongs to one cohort",
                    )
        for i, step in enumerate(self.steps):
            if step.cohort is not None and step.cohort not in names:
                known = ", ".join(sorted(names)) or "none: add spec.cohorts"
                raise _located(("steps", i, "cohort"), f"unknown cohort {step.cohort!r} (known: {known})")
        if self.steps[-1].cohort is not None:
            raise _located(
                ("steps", len(self.steps) - 1, "cohort"),
                "the last step must be everyone's: completing makes the canary everyone's stable",
            )
        return self

    @model_validator(mode="after")
    def _weights_never_decrease(self) -> RolloutSpec:
        """Everyone's weight never decreases, nor any cohort's; and a cohort step raises its cohort above
        the weight everyone already has (else it would change nothing)."""
        everyone = 0
        cohorts: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            if step.weight is None:
                continue
            if step.cohort is None:
                if step.weight < everyone:
                    raise _located(("steps", i, "weight"), f"must not be below the previous step's weight ({everyone})")
                everyone = step.weight
                continue
            before = cohorts.get(step.cohort, 0)
            if step.weight < before:
                raise _located(
                    ("steps", i, "weight"),
                    f"must not be below the weight cohort {step.cohort!r} had before ({before})",
                )
            if step.weight <= everyone:
                raise _located(
                    ("steps", i, "weight"),
                    f"must be above everyone's weight at this point ({everyone}): cohort {step.cohort!r} already "
                    "gets that much, so the step would change nothing",
                )
            cohorts[step.cohort] = step.weight
        return self

    def cohort(self, name: str) -> Cohort:
        return next(c for c in self.cohorts if c.name == name)


class Phase(StrEnum):
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    ROLLED_BACK = "RolledBack"
    COMPLETED = "Completed"


class Status(_Model):
    """Written only by the controller's pull requests."""

    revision: str | None = Field(default=None, description="The canary revision this status is about.")
    stable_revision: str | None = None
    step: int = Field(default=0, ge=0)
    phase: Phase = Phase.PROGRESSING
    message: str | None = Field(default=None, max_length=2000)
    rolled_back: list[str] = Field(
        default_factory=list, description="Revisions rolled back; never promoted again unless retried."
    )
    evidence: list[dict[str, JsonValue]] = Field(
        default_factory=list, description="The gate evidence behind the last rollback or pause."
    )
    retried: list[str] = Field(default_factory=list, description="Rolled-back revisions a human retried.")


class Metadata(_Model):
    name: Name
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Rollout(_Model):
    api_version: Literal["rollouts/v1"]
    kind: Literal["Rollout"]
    metadata: Metadata
    spec: RolloutSpec
    status: Status | None = None

    @model_validator(mode="after")
    def _step_exists(self) -> Rollout:
        """status.step names one of spec.steps, whatever revision the status is about: never clamped to the
        last step, which would send the canary its traffic."""
        last = len(self.spec.steps) - 1
        if self.status is not None and self.status.step > last:
            raise _located(
                ("status", "step"),
                f"must be at most {last}: spec.steps has {last + 1} step(s), numbered from 0 (lower it when steps get fewer)",
            )
        return self


# -- the controller config ----------------------------------------------------------------------


class FileRouterConfig(_Model):
    """The embedded default: a JSON file of weights, written atomically."""

    type: Literal["file"]
    path: Visible = Field(
        default="routes.json", description="Relative to the state directory (`stateDir`), or absolute."
    )
    write_log: Visible | None = Field(
        default=None,
        description="An append-only JSON-lines record of every write and every refused stale write (when, "
        "which process, the route, the fence): the audit a fleet's one-writer rule is checked from. Relative "
        "to the state directory, or absolute.",
    )


class EnvoyRouterConfig(_Model):
    type: Literal["envoy"]
    admin: Url = Field(description="Envoy's admin address; keep it on loopback or behind auth.")
    runtime_prefix: str = Field(default="rollouts", pattern=r"^[a-z][a-z0-9_]*$")
    listen: str = Field(default="127.0.0.1:10000", description="The listener `rollout render envoy` emits.")
    upstreams: dict[str, str] = Field(
        default_factory=dict, description="host:port per model id, for `rollout render envoy`."
    )
    cds_path: Visible | None = Field(
        default=None,
        min_length=1,
        description="The clusters file Envoy watches (file-based CDS), relative to the state directory or "
        "absolute; when set, a write first points each role's cluster at the model it now serves, so no restart.",
    )
    prompts_path: Visible | None = Field(
        default=None,
        min_length=1,
        description="The prompt bundle the router writes: each variant's model, prompt text and params by "
        "revision, which the application behind Envoy applies to every request by the x-rollout-* headers "
        "each role's cluster adds (see `python -m controller.routers.envoy_prompts`). Relative like cdsPath, "
        "or absolute. Needs cdsPath: a new revision is a changed cluster. Without it, the variants of a "
        "rollout on this router may differ only in model.",
    )

    cohort_headers: dict[LabelName, HeaderName] = Field(
        default_factory=dict,
        description="The request header that carries a cohort attribute, per attribute, where it is not the "
        "default: `x-` and the attribute in lower case with `_` as `-` (`tenant_tier` -> `x-tenant-tier`).",
    )

    @model_validator(mode="after")
    def _cohort_headers(self) -> EnvoyRouterConfig:
        for attribute, header in self.cohort_headers.items():
            why = envoy_header_problem(header)
            if why:
                raise _located(("cohortHeaders", attribute), why)
        return self

    def cohort_header(self, attribute: str) -> str:
        return cohort_header(attribute, self.cohort_headers)

    @model_validator(mode="after")
    def _prompts_need_cds(self) -> EnvoyRouterConfig:
        if self.prompts_path is not None and self.cds_path is None:
            raise _located(
                ("promptsPath",),
                "needs cdsPath: each role's cluster tags its requests with the revision it serves, and the "
                "router rewrites the clusters file when a revision changes",
            )
        return self


def cohort_header(attribute: str, overrides: Mapping[str, str]) -> str:
    """The request header an Envoy router matches a cohort attribute on: the router's `cohortHeaders`
    entry, else `x-` and the attribute with `_` as `-` (`tenant_tier` -> `x-tenant-tier`); lower case,
    as HTTP/2 sends it (Envoy matches names case-insensitively)."""
    header = overrides.get(attribute) or "x-" + attribute.replace("_", "-")
    return header.lower()


def envoy_header_problem(header: str) -> str:
    """Why Envoy cannot route a cohort by `header` (a name `cohort_header` gives), or '' when it can."""
    if header.lower().startswith("x-envoy-"):
        return (
            f"{header!r} is in Envoy's own x-envoy-* namespace: Envoy sets some of these headers and removes some "
            "from external requests, so a cohort matched on one may never match; name another header"
        )
    return ""


class FlagdRouterConfig(_Model):
    type: Literal["flagd"]
    path: Visible = Field(description="The flagd flag file, relative to the state directory (`stateDir`), or absolute.")


class LitellmRouterConfig(_Model):
    """A LiteLLM proxy: a route is a model group, a variant a deployment (`model_info.id`).

    Weights are read from `GET /model/info` and applied through `weightsFile`, which the callback
    `controller.routers.litellm_callback.weights`, loaded by the proxy, applies live. Shadow goes
    through LiteLLM's `silent_model`, which mirrors every request or none: a shadow step must be 100.
    """

    type: Literal["litellm"]
    url: Annotated[Url, AfterValidator(_no_userinfo)] = Field(
        description="The proxy's base URL (without user:password@: the master key authenticates)."
    )
    master_key_env: EnvName = Field(default="LITELLM_MASTER_KEY", description="Holds the proxy's master key.")
    weights_file: Visible = Field(
        default="litellm-weights.json",
        min_length=1,
        description="The weights file the proxy's callback watches; relative to the state directory, or absolute.",
    )
    apply_timeout: Timeout = Field(
        default=timedelta(seconds=10), description="How long a write waits for the proxy to confirm the weights."
    )
    deployments: dict[str, dict[str, JsonValue]] = Field(
        default_factory=dict,
        description="Extra `litellm_params` per model id (api_base, api_key: os.environ/NAME), for `rollout render "
        "litellm` and for a deployment that comes to serve that model.",
    )
    proxy_config: Visible | None = Field(
        default=None,
        min_length=1,
        description="The proxy's config.yaml, when it lives in this repository (relative to its root): `rollout "
        "validate` and `rollout render litellm` check that it routes every rollout's model group by "
        "`simple-shuffle`, the one routing strategy under which LiteLLM honours weights.",
    )


class UnleashRouterConfig(_Model):
    """An Unleash server: a route is a feature flag (the route's name, '/' spelt '~') whose strategies in
    `environment` split the users between variants stable, canary and previous, each with a JSON payload
    {model, prompt, promptText, revision, params}. Writes go through the admin API, reads through the
    client API (what SDKs are served). Unleash cannot mirror traffic, so a rollout on this router cannot
    have a shadow step."""

    type: Literal["unleash"]
    url: Annotated[Url, AfterValidator(_no_userinfo)] = Field(
        description="The Unleash server's base URL (without /api, without user:password@: the tokens authenticate)."
    )
    admin_token_env: EnvName = Field(
        default="UNLEASH_ADMIN_TOKEN", description="Holds an admin API token (writes the flags)."
    )
    client_token_env: EnvName = Field(
        default="UNLEASH_CLIENT_TOKEN",
        description="Holds a backend (client) API token for `environment` (reads what SDKs are served).",
    )
    project: str = Field(default="default", pattern=UNLEASH_NAME, description="The project that holds the flags.")
    environment: str = Field(default="development", pattern=UNLEASH_NAME, description="The environment written.")
    stickiness: str = Field(
        default="default",
        pattern=UNLEASH_NAME,
        description="What buckets a user: `default` (Unleash's: userId, else sessionId, else random), `userId`, "
        "`sessionId`, `random` (no stickiness) or a custom context field. A request without it gets stable.",
    )
    apply_timeout: Timeout = Field(
        default=timedelta(seconds=10),
        description="How long a write waits for the client API to serve it (Unleash refreshes it about every second).",
    )


def _in_repository(value: str) -> str:
    if value.startswith(("/", "\\", "~")) or (len(value) > 1 and value[1] == ":"):
        raise ValueError(f"{value!r} must be a directory of this repository, relative to its root")
    if ".." in value.replace("\\", "/").split("/"):
        raise ValueError(f"{value!r} must not climb out of the repository ('..')")
    return value


RepoDir = Annotated[Visible, Field(min_length=1), AfterValidator(_in_repository)]
Port = Annotated[int, Field(ge=1, le=65535)]
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
Hostname = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    ),
]

_MESH_ROUTE = (
    "A route on this router is the name of the object it renders (a DNS subdomain), one file `<route>.yaml` in "
    "`manifests`; each role is the Kubernetes Service `<rollout>-<role>` (`support-bot-stable`, "
    "`support-bot-canary`), whose workload serves that role's model, prompt and params."
)


class IstioRouterConfig(_Model):
    """Istio: a route is a VirtualService whose one HTTP route splits between the roles' Services by integer
    percentages, and mirrors to the canary's Service (`mirror` with `mirrorPercentage`) during a shadow step.
    `rollout render istio` writes them into `manifests`, which Argo CD or Flux applies."""

    type: Literal["istio"]
    manifests: RepoDir = Field(
        description="The directory of this repository, relative to its root, that holds the rendered "
        "VirtualServices (one `<route>.yaml` each) and that your GitOps tool applies. " + _MESH_ROUTE
    )
    namespace: str = Field(
        default="default", pattern=DNS_LABEL, description="The namespace of the VirtualServices and Services."
    )
    port: Port = Field(default=80, description="The port of each role's Service.")
    gateways: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list,
        description="The VirtualServices' `gateways` (`namespace/name`, or `mesh`); empty: the mesh's sidecars only.",
    )
    hosts: dict[RouteName, list[Hostname]] = Field(
        default_factory=dict,
        description="Each route's VirtualService `hosts`, where they are not the route's own name.",
    )


class ParentRef(_Model):
    """A Gateway an HTTPRoute attaches to."""

    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253)
    namespace: str | None = Field(default=None, pattern=DNS_LABEL)
    section_name: str | None = Field(default=None, pattern=DNS_SUBDOMAIN, max_length=253)


class GatewayApiRouterConfig(_Model):
    """The Gateway API: a route is an HTTPRoute whose one rule splits between the roles' Services by
    `backendRefs[].weight`, and mirrors to the canary's Service with a `RequestMirror` filter (`percent`)
    during a shadow step. `rollout render gateway-api` writes them into `manifests`."""

    type: Literal["gateway-api"]
    manifests: RepoDir = Field(
        description="The directory of this repository, relative to its root, that holds the rendered "
        "HTTPRoutes (one `<route>.yaml` each) and that your GitOps tool applies. " + _MESH_ROUTE
    )
    namespace: str = Field(
        default="default", pattern=DNS_LABEL, description="The namespace of the HTTPRoutes and Services."
    )
    port: Port = Field(default=80, description="The port of each role's Service.")
    parent_refs: list[ParentRef] = Field(
        min_length=1, max_length=32, description="The Gateways the HTTPRoutes attach to."
    )
    hostnames: dict[RouteName, list[Hostname]] = Field(
        default_factory=dict, description="Each route's HTTPRoute `hostnames`; a route not named here has none."
    )


RouterConfig = Annotated[
    FileRouterConfig
    | EnvoyRouterConfig
    | FlagdRouterConfig
    | LitellmRouterConfig
    | UnleashRouterConfig
    | IstioRouterConfig
    | GatewayApiRouterConfig,
    Field(discriminator="type"),
]


class PrometheusConfig(_Model):
    url: Url
    timeout: Timeout = Field(default=timedelta(seconds=10))
    bearer_token_env: EnvName | None = None


class MlflowConfig(_Model):
    """The MLflow tracking server whose Prompt Registry `prompts:/NAME/VERSION` prompts come from."""

    tracking_uri: Annotated[Url, AfterValidator(_no_userinfo)] = Field(
        description="The tracking server's URL, as MLFLOW_TRACKING_URI names it (http or https)."
    )
    token_env: EnvName | None = Field(
        default=None, description="An environment variable holding a bearer token for the server; never logged."
    )
    timeout: Timeout = Field(default=timedelta(seconds=10))


class LocalForgeConfig(_Model):
    type: Literal["local"]


class GithubApp(_Model):
    """A GitHub App installation; commits it makes through the API are signed by GitHub."""

    app_id: int = Field(gt=0, le=MAX_ID)
    installation_id: int = Field(gt=0, le=MAX_ID)
    private_key_env: EnvName = Field(default="GITHUB_APP_PRIVATE_KEY", description="Holds the App's PEM key.")


class GithubForgeConfig(_Model):
    type: Literal["github"]
    repository: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/name")
    api_url: Url = "https://api.github.com"
    token_env: EnvName = "GITHUB_TOKEN"
    app: GithubApp | None = Field(default=None, description="Authenticate as this App instead of with tokenEnv.")


ForgeConfig = Annotated[LocalForgeConfig | GithubForgeConfig, Field(discriminator="type")]


_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\\n]|\\.)*"\s*'
SELECTOR_PATTERN = rf"^\s*[a-zA-Z_:][a-zA-Z0-9_:]*\s*(\{{({_MATCHER}(,{_MATCHER})*,?\s*)?\}})?\s*$"

Selector = Annotated[
    str,
    Field(
        pattern=SELECTOR_PATTERN,
        description='A PromQL series selector, e.g. llm_requests_total{outcome="error"}; nothing else.',
    ),
]


class _TemplateModel(_Model):
    """What every kind of gate template has."""

    description: str = ""
    live_only: bool = Field(
        default=False,
        description="Only answers users see produce this metric (their feedback): a shadow step, whose answers no "
        "user sees, cannot judge it, so there it holds nothing.",
    )


class RatioTemplate(_TemplateModel):
    """A counter over a counter (good or bad events over all), so the judge sees sample counts."""

    kind: Literal["ratio"]
    good: Selector | None = Field(default=None, description="The counter of good events (value = good / total).")
    bad: Selector | None = Field(default=None, description="The counter of bad events (value = bad / total).")
    total: Selector = Field(description="The counter of all events; its increase is the sample count.")

    @model_validator(mode="after")
    def _good_or_bad(self) -> RatioTemplate:
        if (self.good is None) == (self.bad is None):
            raise ValueError("a ratio template sets exactly one of 'good' or 'bad'")
        return self

    @property
    def numerator(self) -> str:
        return self.good or self.bad or ""


class QuantileTemplate(_TemplateModel):
    """A quantile of a histogram; the +Inf bucket's increase is the sample count."""

    kind: Literal["quantile"]
    buckets: Selector = Field(description="A histogram's _bucket series (with an `le` label).")
    quantile: float = Field(default=0.95, gt=0, lt=1)
    scale: float = Field(
        default=1.0, gt=0, le=MAX_THRESHOLD, description="Multiplies the value into seconds (0.001 for ms)."
    )


class MeanTemplate(_TemplateModel):
    """A quantity per event (tokens or spend per answered request): a counter of the quantity over a
    counter of the events it accrues on, whose increase is the sample count. The value is not a
    share, so it is judged as a plain comparison; with `requests`, a canary must also answer as large
    a share of its requests as stable (see `gates.ANSWERED_MARGIN`) to pass."""

    kind: Literal["mean"]
    sum: Selector = Field(description="The counter of the quantity (value = sum / count).")
    count: Selector = Field(description="The counter of the events; its increase is the sample count.")
    requests: Selector | None = Field(
        default=None,
        description="The counter of every request, answered or not. With it the gate never passes a canary "
        "that answers a smaller share of its requests than stable (by more than 1 point, or not yet shown): "
        "a failed request costs nothing and has no tokens, so a failing canary would look cheap.",
    )


class ValueTemplate(_TemplateModel):
    """Free PromQL. Placeholders: {{window}}, {{by}} (the labels to group by) and {{match}} (a
    matcher for the routes under evaluation, to put inside a selector's braces)."""

    kind: Literal["value"]
    query: str = Field(min_length=1, description="PromQL grouped `by ({{by}})`; one series per variant and segment.")
    samples: str | None = Field(default=None, description="PromQL giving the sample count behind the value.")


GateTemplate = Annotated[RatioTemplate | QuantileTemplate | MeanTemplate | ValueTemplate, Field(discriminator="kind")]


def _check_state_dir(value: str) -> str:
    if not (value.startswith("/") or value == "~" or value.startswith("~/")):
        raise ValueError(
            f"{value!r} is relative: give an absolute path or one under ~/, so that every command, "
            "run from any directory, reads and writes the same router state"
        )
    return value


StateDir = Annotated[str, Field(min_length=1), AfterValidator(_visible), AfterValidator(_check_state_dir)]


class EtcdCoordination(_Model):
    """Shard ownership on an etcd cluster (v3, through its HTTP gateway): a lease per controller, a
    compare-and-swap key per shard."""

    type: Literal["etcd"]
    endpoints: list[Annotated[Url, AfterValidator(_no_userinfo)]] = Field(
        min_length=1, description="The cluster's client URLs (`http://10.0.0.1:2379`); the client tries each in turn."
    )
    prefix: str = Field(
        default="/llm-rollouts", pattern=r"^/[A-Za-z0-9_./-]*$", description="Where the fleet's keys live."
    )
    ttl: Interval = Field(
        default=timedelta(seconds=10),
        description="A controller's lease: its shards go to the others this long after it stops keeping it alive.",
    )


class KubernetesCoordination(_Model):
    """Shard ownership through `coordination.k8s.io/v1` Leases: one Lease per shard and one per controller."""

    type: Literal["kubernetes"]
    namespace: str | None = Field(
        default=None, pattern=DNS_LABEL, description="Where the Leases live; unset, the pod's own namespace."
    )
    ttl: Interval = Field(default=timedelta(seconds=15), description="The Leases' `leaseDurationSeconds`.")


Coordination = Annotated[EtcdCoordination | KubernetesCoordination, Field(discriminator="type")]


class FleetRepository(_Model):
    """Another GitOps repository the fleet serves, with its own `controller.yaml` (routers, forge, gates)."""

    name: Name = Field(description="Its name in the fleet: part of each rollout's shard key, so keep it stable.")
    remote: Annotated[str, AfterValidator(_no_password)] = Field(
        description="Its git remote, as `git clone` takes it (credentials come from git's own helpers, never the URL)."
    )
    branch: str = Field(default="main", description="The branch that holds its desired state.")


class FleetConfig(_Model):
    """Several controllers sharing the work of one or more repositories (docs/sharding.md)."""

    name: Name = Field(description="The fleet's name: controllers of one fleet share its shards.")
    shards: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="Rollouts are hashed into this many shards; changing it is a fleet restart.",
    )
    coordination: Coordination
    repositories: list[FleetRepository] = Field(
        default_factory=list, description="Repositories served besides this one; each one's errors are its own."
    )

    @model_validator(mode="after")
    def _distinct(self) -> FleetConfig:
        seen: set[str] = set()
        for n, r in enumerate(self.repositories):
            if r.name in seen or r.name == HOME_REPOSITORY:
                why = "is this repository's own name" if r.name == HOME_REPOSITORY else "is given twice"
                raise _located(("repositories", n, "name"), f"{r.name!r} {why}")
            seen.add(r.name)
        return self


class NotificationEvent(StrEnum):
    """What a notification tells: a rollback (by a gate or `rollout abort`), a pause, a promotion PR
    waiting for review, a completion PR."""

    ROLLBACK = "rollback"
    PAUSE = "pause"
    PROMOTION = "promotion"
    COMPLETION = "completion"


class _Destination(_Model):
    url_env: EnvName = Field(
        description="The environment variable that holds the webhook's URL. The URL is a secret (a Slack "
        "webhook's URL is its credential): it is never written in this file and never logged."
    )
    on: list[NotificationEvent] = Field(
        default_factory=lambda: list(NotificationEvent),
        min_length=1,
        description="The events posted here (default: every one).",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_literal_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "url" in data:
            raise _located(
                ("url",),
                "a webhook URL is a secret: put it in an environment variable and name that variable in "
                "`urlEnv` (e.g. urlEnv: ROLLOUT_SLACK_WEBHOOK)",
            )
        return data


class SlackNotification(_Destination):
    """A Slack incoming webhook (or one that takes Slack's format: Mattermost, Rocket.Chat)."""

    type: Literal["slack"]


class WebhookNotification(_Destination):
    """Any HTTP endpoint: the generic JSON payload (schemas/notification.schema.json), version 1."""

    type: Literal["webhook"]
    headers_env: EnvName | None = Field(
        default=None,
        description="An environment variable holding extra request headers as a JSON object (e.g. "
        '{"Authorization": "Bearer ..."}); never logged.',
    )


NotificationConfig = Annotated[SlackNotification | WebhookNotification, Field(discriminator="type")]


HOME_REPOSITORY = "home"  # the repository whose controller.yaml names the fleet, as the shard key has it


class ControllerConfig(_Model):
    api_version: Literal["rollouts/v1"]
    kind: Literal["ControllerConfig"]
    routers: dict[Name, RouterConfig] = Field(min_length=1)
    prometheus: PrometheusConfig | None = None
    mlflow: MlflowConfig | None = Field(
        default=None, description="The MLflow server that `prompts:/NAME/VERSION` prompts are read from."
    )
    forge: ForgeConfig = Field(default_factory=lambda: LocalForgeConfig(type="local"))
    gate_templates: dict[TemplateName, GateTemplate] = Field(default_factory=dict)
    branch: str = Field(default="main", description="The branch that holds the desired state.")
    fleet: FleetConfig | None = Field(
        default=None,
        description="Share the work among several controllers and serve more repositories (docs/sharding.md). "
        "Read by the controller started on this repository; ignored in the repositories it lists.",
    )
    notifications: list[NotificationConfig] = Field(
        default_factory=list,
        max_length=20,
        description="Where rollbacks, pauses, promotion PRs and completions are posted (README: Notifications).",
    )
    state_dir: StateDir | None = Field(
        default=None,
        description="Where the routers' relative paths (file and flagd `path`, LiteLLM `weightsFile`, Envoy "
        "`cdsPath` and `promptsPath`) resolve, for every command: an absolute path or one under `~/`. $ROLLOUT_STATE_DIR "
        "overrides it; unset, it is $XDG_STATE_HOME/rollout (~/.local/state/rollout).",
    )

    def gate_names(self) -> frozenset[str]:
        return BUILTIN_GATES | frozenset(self.gate_templates)


# -- located errors from validators ------------------------------------------------------------


class LocatedValueError(ValueError):
    """A model validator's error about one nested field, so the loader can point at its line."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        self.loc = loc
        super().__init__(message)


def _located(loc: tuple[str | int, ...], message: str) -> LocatedValueError:
    return LocatedValueError(loc, message)


def cluster_name(rollout: str, variant: str) -> str:
    """The name of one variant of one rollout wherever a router needs one (an Envoy cluster, a
    LiteLLM deployment id) and metrics carry it: `support-bot_canary`. Rollout names are DNS labels
    (no `_`), so the last `_` splits it back: `label_replace(..., "(.+)_([a-z]+)")`."""
    return f"{rollout}_{variant}"


class _Schema(GenerateJsonSchema):
    """JSON Schema whose defaults are written as a file would write them (a duration as `1m`, not
    pydantic's `PT1M`, which the duration's own pattern refuses) and whose titles are words."""

    def encode_default(self, dft: Any) -> Any:
        return format_duration(dft) if isinstance(dft, timedelta) else super().encode_default(dft)


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_Schema)
    for definition in schema.get("$defs", {}).values():  # enums (OnFail, Phase) are titled by class name
        if "enum" in definition and "title" in definition:
            definition["title"] = _words(definition["title"])
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema

"""The controller's settings: where it keeps router state, and the knobs it runs by. Pure: the CLI
reads the environment and passes it in; nothing here reads it on its own.

`Settings` gathers every knob that is not part of a rollout's or a router's spec (those live in git,
in `controller.yaml`): how a write that lowers exposure is retried, the lease's time to live, how much
the controller remembers between ticks, the adapters' timeouts and retry policies. One frozen value,
built once and passed down (`Settings()` is the default; a field is changed with
`dataclasses.replace`), as kopf's `OperatorSettings` are: no module keeps a knob of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller import spec

STATE_ENV = "ROLLOUT_STATE_DIR"  # overrides controller.yaml's stateDir; must be absolute
REMOTE_ENV = "ROLLOUT_REMOTE"  # the GitOps repository when --remote is not given


def state_dir(config: spec.ControllerConfig, *, env: Mapping[str, str], home: Path) -> Path:
    """Where the routers' relative paths resolve, the same for every command and every working
    directory: $ROLLOUT_STATE_DIR, else controller.yaml's `stateDir`, else $XDG_STATE_HOME/rollout
    (`home`/.local/state/rollout). A relative $ROLLOUT_STATE_DIR is a ValueError: two commands run from
    two directories would act on two router states."""
    override = env.get(STATE_ENV)
    if override and not Path(override).expanduser().is_absolute():
        raise ValueError(
            f"${STATE_ENV} is {override!r}, a relative path: give an absolute one, so that every command, "
            "from any directory, reads and writes the same router state"
        )
    chosen = override or config.state_dir
    if chosen:
        return Path(chosen).expanduser().absolute()
    return Path(env.get("XDG_STATE_HOME") or home / ".local" / "state").expanduser() / "rollout"


@dataclass(frozen=True)
class Backoff:
    """Retries of a router write that takes exposure away (a rollback, a heal to no canary) within one
    tick: `attempts` tries, waiting `first` seconds, then twice as long each time, at most `cap`."""

    attempts: int = 4
    first: float = 0.25
    cap: float = 2.0

    def delays(self) -> list[float]:
        return [min(self.cap, self.first * 2**i) for i in range(max(0, self.attempts - 1))]


@dataclass(frozen=True)
class Memory:
    """What one controller process remembers between ticks, bounded so a long-running process holds
    steady: the step history (when main first said a rollout's current step, per commit and rollout,
    about 100 bytes each) and the checks it set on pull requests (so it does not set them again)."""

    step_histories: int = 200_000
    checks: int = 10_000
    notifications: int = 10_000  # (rollout, revision, action, PR) keys told, so a repeated decision is told once


@dataclass(frozen=True)
class Timeouts:
    """Seconds an adapter waits for one answer. Prometheus's and LiteLLM's write timeouts are the
    routers' own, in `controller.yaml`."""

    envoy_admin: float = 2.0  # one request to Envoy's admin API
    envoy_clusters: float = 10.0  # a canary's cluster to appear through CDS before its weight is written
    litellm_admin: float = 5.0  # one request to the LiteLLM proxy's admin API
    unleash_api: float = 5.0  # one request to Unleash's admin or client API
    kubernetes_api: float = 10.0  # one request to the Kubernetes API (the istio and gateway-api routers)
    github: float = 10.0  # connect and read, per request to GitHub's API
    llm: float = 60.0  # one chat completion (`rollout eval`)
    plan_metrics: float = (
        3.0  # `rollout plan`'s metrics-contract check, at most (Prometheus's own timeout when shorter)
    )


@dataclass(frozen=True)
class Retries:
    """The adapters' retry policies."""

    github_rate_limit_attempts: int = 3  # tries of a request GitHub refused with a rate limit
    github_rate_limit_max_wait: float = 10.0  # seconds; a later reset pauses the identity until the next tick
    local_forge_updates: int = 20  # compare-and-swap tries of one local-forge ref update under contention
    llm_retries: int = 3  # retries of a chat completion answered 429 or 5xx (`rollout eval`)
    llm_first_wait: float = 0.5  # seconds, doubling, at most `llm_max_wait`
    llm_max_wait: float = 20.0


@dataclass(frozen=True)
class Notifications:
    """How notifications are delivered (`controller.notifier`): a thread per destination, never in a tick."""

    timeout: float = 5.0  # seconds a try has in all: connect, send, the answer (and each socket read)
    attempts: int = 5  # tries of a POST answered 429 or 5xx, or not answered, before it is given up
    first_wait: float = 1.0  # seconds before the second try, doubling each time
    max_wait: float = 60.0  # at most this long between two tries, a 429's Retry-After included
    queue: int = 1_000  # messages waiting to be posted, per destination; a full one drops its oldest (counted)
    flush: float = 5.0  # seconds the process waits on exit for the messages still queued


@dataclass(frozen=True)
class GithubBudget:
    """GitHub's request budget per identity (a token or an App installation), as GitHub documents it,
    and how the controller paces itself within it. A controller sharing an identity with k-1 others
    takes 1/k of every limit, and spaces its mutations k times as far apart."""

    total_per_hour: int = 5_000  # every request (a `304` to a conditional request is free)
    app_total_per_hour: int = 12_500  # the same, for an App installation
    content_per_minute: int = 80  # content-creating requests (every POST, PATCH, PUT, DELETE counts as one)
    content_per_hour: int = 500
    mutation_interval: float = 1.0  # seconds between two mutations of one identity, as GitHub asks
    default_pause: float = 60.0  # seconds an identity waits on a secondary limit that names no time
    queue_wait: float = 5.0  # seconds a mutation may wait for its turn in the queue before it fails (retryable)
    etags: int = 10_000  # answers kept per forge for conditional requests (ETag and body, a few KB each)


@dataclass(frozen=True)
class Settings:
    """Every knob the controller runs by, in one documented place (see the module docstring)."""

    writes: Backoff = field(default_factory=Backoff)
    lease_ttl: timedelta = timedelta(minutes=2)  # a lease not renewed for this long may be taken over
    pr_refresh: timedelta = timedelta(minutes=10)  # an open PR whose only change is its figures is rewritten this often
    memory: Memory = field(default_factory=Memory)
    timeouts: Timeouts = field(default_factory=Timeouts)
    retries: Retries = field(default_factory=Retries)
    github: GithubBudget = field(default_factory=GithubBudget)
    notifications: Notifications = field(default_factory=Notifications)

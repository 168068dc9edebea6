"""One exception tree for the whole controller.

Adapters translate third-party exceptions into these at their boundary (`raise X(...) from exc`),
so callers never see an httpx, requests or git exception. Messages name the object and the
operation, and never carry a secret.
"""

from __future__ import annotations

from dataclasses import dataclass


class RolloutError(Exception):
    """The root of every error the controller raises on purpose."""

    #: a retryable error is a fault of the moment (a router or server unreachable): hold and retry.
    retryable: bool = False


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input file, located as precisely as we can."""

    file: str
    line: int  # 1-based; 0 when the whole file is at fault
    column: int  # 1-based; 0 when unknown
    field: str  # a dotted field path such as "spec.steps[2].weight", or "" for the whole file
    message: str
    code: str = "E000"
    source: str = ""  # the file's line at `line`, for text output to show under the error with a caret

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        what = f"{self.field}: {self.message}" if self.field else self.message
        return printable(f"{where}: {what}")


def printable(text: str) -> str:
    """`text` with what a terminal would act on (an escape sequence in a directory name, a key, a
    message) spelled as escapes: a message about an input never runs it."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class SpecError(RolloutError):
    """One or more input files are invalid. Nothing derived from them may be applied."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class RouterError(RolloutError):
    """A router could not be read or written."""


class RouterUnavailable(RouterError):
    """The router did not answer; nothing was written. Retry later."""

    retryable = True


class RouterStateError(RouterError):
    """The router answered with a live state we do not understand; nothing was written."""


class RouterSplitError(RouterStateError):
    """The router shows the route's weights, but they are no valid split (not whole percents summing to
    100): a write of a valid state replaces them, so the reconciler heals it to what main says."""


class RouterFenced(RouterError):
    """The route was last written by its shard's newer owner (a higher fencing token): this controller
    no longer owns the rollout, so nothing was written."""


class RouterVerifyError(RouterError):
    """A write was not confirmed when read back. The tick must hold, never report success."""

    retryable = True


class MetricsError(RolloutError):
    """Prometheus could not be queried, or answered an error."""

    retryable = True


class MetricsUnavailable(MetricsError):
    """Prometheus did not answer (refused, timed out): asking it again in the same command is no use."""


class ForgeError(RolloutError):
    """The forge (GitHub or the local forge) refused or failed an operation."""


class ForgeUnavailable(ForgeError):
    retryable = True


class ForgeRateLimited(ForgeUnavailable):
    """The forge's request budget for this identity is spent, or the forge asked us to wait (a
    `Retry-After`, a secondary rate limit): nothing was sent. `retry_after` is in seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RegistryError(RolloutError):
    """MLflow's registry (a prompt version, a model or prompt alias) could not be read or written, or
    answered that what was asked for does not exist."""


class RegistryUnavailable(RegistryError):
    """The MLflow server did not answer (refused, timed out, a 5xx): a fault of the moment."""

    retryable = True


class RepoError(RolloutError):
    """A git operation on the rollouts repository failed."""


class CoordinationError(RolloutError):
    """The coordinator (etcd, the Kubernetes API) cannot be reached or refused: no shard is proven owned,
    so nothing that raises exposure is written; rollbacks still are."""

    retryable = True


class LeaseHeld(RolloutError):
    """Another controller holds the lease on this repository: `holder` names it ("" when it could not
    be read back after it won a race)."""

    retryable = True

    def __init__(self, message: str, *, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


class EvalError(RolloutError):
    """An eval could not run: a golden set is unreadable, or a model endpoint failed or answered
    something we cannot read. Added for `controller.evals` and `controller.llm`."""


class EvalUnavailable(EvalError):
    """The model endpoint did not answer in time or kept refusing (429/5xx) after every retry."""

    retryable = True

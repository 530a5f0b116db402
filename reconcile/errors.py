"""The one exception tree of reconcile.

    ReconcileError                 anything reconcile reports and handles (exit 1)
    ├── SpecError                  the spec is invalid: carries one SpecIssue per problem
    ├── PlanError                  the plan cannot be made or used (limits, errors in the plan)
    │   └── StalePlanError         a saved plan no longer fits (format, base URL, spec digest)
    ├── BackendError               talking to W&B failed
    │   ├── AuthError              the key was refused (401/403) or is missing
    │   ├── NotFound               entity, project, run or file does not exist
    │   └── RetryableError         429/5xx/timeouts: worth trying again
    └── ApplyError                 apply finished but something was not done

Library exceptions (yaml, jsonschema, wandb) are translated into these in the one
module that uses that library, with ``raise ... from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass


class ReconcileError(Exception):
    """Root of every error reconcile handles; the message says what to do next."""


@dataclass(frozen=True, slots=True)
class SpecIssue:
    """One problem in a spec file: where it is and what is wrong."""

    file: str
    line: int  # 1-based; 0 when the position is unknown
    column: int  # 1-based; 0 when the position is unknown
    path: str  # JSON path inside the document, e.g. "rules[2].set.config"
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path or '<document>'}: {self.message}"


class SpecError(ReconcileError):
    """The spec is invalid; ``issues`` lists every problem, sorted by position."""

    def __init__(self, issues: list[SpecIssue] | tuple[SpecIssue, ...]) -> None:
        self.issues = tuple(sorted(issues, key=lambda i: (i.file, i.line, i.column, i.path)))
        super().__init__("\n".join(str(i) for i in self.issues))


class PlanError(ReconcileError):
    """The plan cannot be made or used."""


class StalePlanError(PlanError):
    """A saved plan was written by another format version, for another server or spec."""


class BackendError(ReconcileError):
    """Talking to W&B failed; ``status`` is the HTTP status when known, ``refusal`` the server's own
    words when it answered and refused the request (a GraphQL error: a bad filter, say)."""

    def __init__(self, message: str, *, status: int | None = None, refusal: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.refusal = refusal


class AuthError(BackendError):
    """W&B refused the API key, or none was found."""


class NotFound(BackendError):
    """The entity, project, run or file does not exist."""


class RetryableError(BackendError):
    """A transient failure (rate limit, server error, timeout): worth trying again."""


class ApplyError(ReconcileError):
    """Apply finished but some runs were stale, failed or did not converge."""


class PlanMismatch(ApplyError):
    """A saved plan does not match the live run it names (edited or corrupt): the run is refused."""


class PlanLocked(PlanError):
    """Another apply of the same plan (journal) is running."""

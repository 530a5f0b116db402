"""Our retry layer above wandb-core's: exponential backoff with full jitter on ``RetryableError``.

wandb-core already retries 429/5xx itself (honouring ``Retry-After``, protocol §10), so a
``RetryableError`` reaching us means its budget or the Python-side timeout ran out; we
wait longer and try the whole call again, a bounded number of times.

Hazard: after a *timeout* (``RetryableError.status is None``) the request may have been
applied anyway, so re-issuing a non-idempotent write could apply it twice. reconcile's
writes are safe to repeat: an UpsertBucket carries absolute values (never increments),
deleteFiles of an already deleted id succeeds in the emulator (unknown on W&B, protocol
§14.4), and re-uploading a file overwrites it. Pass ``retry_unknown_outcome=False`` for
any call that is not.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import structlog
import tenacity

from reconcile.errors import RetryableError

T = TypeVar("T")

log = structlog.get_logger(__name__)


class _Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def backoff_delay(attempt: int, *, base: float, cap: float, rng: _Uniform) -> float:
    """Full-jitter delay before retry number ``attempt`` (1-based): U(0, min(cap, base*2^(n-1)))."""
    return rng.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))


def with_retries(
    fn: Callable[[], T],
    *,
    attempts: int = 4,
    max_total: float = 120.0,
    base: float = 1.0,
    cap: float = 30.0,
    retry_unknown_outcome: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: _Uniform = random,  # the random module is a fine uniform source
    **log_context: object,
) -> T:
    """Call ``fn`` until it succeeds, retrying only ``RetryableError``.

    At most ``attempts`` calls; no wait would end past ``max_total`` seconds from the
    first call (the last error is raised instead). Each retry is logged with ``attempt``
    and ``delay`` plus ``log_context`` (e.g. ``run=...``).
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    started = clock()

    def should_retry(state: tenacity.RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        if not isinstance(exc, RetryableError):
            return False
        return retry_unknown_outcome or exc.status is not None

    def wait(state: tenacity.RetryCallState) -> float:
        return backoff_delay(state.attempt_number, base=base, cap=cap, rng=rng)

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= attempts:
            return True
        # Stop now rather than sleep past the budget (tenacity has computed the wait).
        upcoming = state.upcoming_sleep
        return clock() - started + upcoming > max_total

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning("retrying", attempt=state.attempt_number, delay=round(state.upcoming_sleep, 3),
                    error=str(exc), **log_context)

    retrying = tenacity.Retrying(
        retry=should_retry, wait=wait, stop=stop, sleep=sleep, before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)

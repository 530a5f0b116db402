"""Unit tests of reconcile.backend.retry: which errors are retried, backoff bounds, logging."""

from __future__ import annotations

import random

import pytest
from structlog.testing import capture_logs

from reconcile.backend.retry import backoff_delay, with_retries
from reconcile.errors import AuthError, BackendError, RetryableError


class FakeClock:
    """A clock that only moves when the fake sleep is called."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


class Flaky:
    """Raises the given errors in order, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_with_retries_retries_retryable_until_success() -> None:
    """Two RetryableErrors then success: three calls, two sleeps, the result returned."""
    clock = FakeClock()
    fn = Flaky(RetryableError("503", status=503), RetryableError("429", status=429))
    assert with_retries(fn, sleep=clock.sleep, clock=clock, rng=random.Random(1)) == "ok"
    assert fn.calls == 3
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("error", [AuthError("no"), BackendError("bad request", status=400), ValueError("x")])
def test_with_retries_does_not_retry_other_errors(error: Exception) -> None:
    """Anything but RetryableError is raised at once, without sleeping."""
    clock = FakeClock()
    fn = Flaky(error)
    with pytest.raises(type(error)):
        with_retries(fn, sleep=clock.sleep, clock=clock)
    assert fn.calls == 1
    assert clock.sleeps == []


def test_with_retries_stops_after_attempts() -> None:
    """attempts bounds the number of calls; the last RetryableError is re-raised."""
    clock = FakeClock()
    fn = Flaky(*(RetryableError(f"fail {i}", status=500) for i in range(10)))
    with pytest.raises(RetryableError, match="fail 2"):
        with_retries(fn, attempts=3, sleep=clock.sleep, clock=clock)
    assert fn.calls == 3
    assert len(clock.sleeps) == 2


def test_with_retries_never_sleeps_past_max_total() -> None:
    """The total time budget stops retrying before a wait would overrun it."""
    clock = FakeClock()
    fn = Flaky(*(RetryableError("down", status=503) for _ in range(50)))
    with pytest.raises(RetryableError):
        with_retries(fn, attempts=50, max_total=10.0, base=2.0, cap=8.0, sleep=clock.sleep, clock=clock,
                     rng=random.Random(7))
    assert clock.now <= 10.0
    assert fn.calls < 50


def test_with_retries_unknown_outcome_can_be_refused() -> None:
    """A timeout (status None) is not retried when retry_unknown_outcome is False."""
    clock = FakeClock()
    fn = Flaky(RetryableError("did not respond in time"))
    with pytest.raises(RetryableError):
        with_retries(fn, retry_unknown_outcome=False, sleep=clock.sleep, clock=clock)
    assert fn.calls == 1
    fn = Flaky(RetryableError("did not respond in time"))
    assert with_retries(fn, sleep=clock.sleep, clock=clock) == "ok"
    assert fn.calls == 2


def test_with_retries_logs_attempt_and_delay() -> None:
    """Each retry is logged with attempt, delay and the caller's context."""
    clock = FakeClock()
    fn = Flaky(RetryableError("a", status=500), RetryableError("b", status=500))
    with capture_logs() as logs:
        with_retries(fn, sleep=clock.sleep, clock=clock, run="e/p/r1")
    retries = [entry for entry in logs if entry["event"] == "retrying"]
    assert [entry["attempt"] for entry in retries] == [1, 2]
    assert [entry["delay"] for entry in retries] == [round(s, 3) for s in clock.sleeps]
    assert all(entry["run"] == "e/p/r1" for entry in retries)


def test_backoff_delay_is_full_jitter_within_exponential_cap() -> None:
    """Delays lie in [0, min(cap, base * 2^(n-1))] and grow in their upper bound."""
    rng = random.Random(3)
    for attempt in range(1, 10):
        bound = min(20.0, 0.5 * 2 ** (attempt - 1))
        samples = [backoff_delay(attempt, base=0.5, cap=20.0, rng=rng) for _ in range(200)]
        assert all(0.0 <= s <= bound for s in samples)
        assert max(samples) > bound / 2  # jitter spans the range, not a constant


def test_with_retries_rejects_zero_attempts() -> None:
    """attempts must allow at least one call."""
    with pytest.raises(ValueError, match="attempts"):
        with_retries(lambda: None, attempts=0)

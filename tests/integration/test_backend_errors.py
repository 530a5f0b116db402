"""The error classifier fed by the real client: each failure is produced by the installed wandb (and its
wandb-core) against the emulator, never typed by hand, so a wandb upgrade that rewords its errors fails
here instead of leaving the classifier silently wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wandb

from reconcile.backend.wandb_api import translate_error
from reconcile.errors import AuthError, BackendError, NotFound, RetryableError
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent.parent / "emulator" / "fixture.yaml"


def real_failure(emu: Any, run_path: str = "acme/vision/abc123", *, timeout: int | None = None,
                 **faults: Any) -> BaseException:
    """The exception the real client raises reading ``run_path`` with ``faults`` set on the emulator."""
    api = wandb.Api(overrides={"base_url": emu.url}, api_key=TEST_API_KEY, timeout=timeout)
    emu.set_faults(**faults)
    try:
        api.run(run_path)
    except Exception as exc:
        return exc
    finally:
        emu.set_faults(fail_rate=0.0, throttle_next=0, drop_rate=0.0, hang_rate=0.0)
    raise AssertionError(f"the client did not fail with {faults}")


@pytest.mark.parametrize(("faults", "kind", "status"), [
    ({"fail_rate": 1.0}, RetryableError, 500),  # wandb-core gave up retrying a 5xx
    ({"throttle_next": 100}, RetryableError, 429),  # ... or a 429
    ({"drop_rate": 1.0}, RetryableError, None),  # the answer was cut mid-body: outcome unknown
])
def test_server_failures_from_the_real_client_are_retryable(
        faults: dict[str, Any], kind: type[BackendError], status: int | None,
        emulator: Callable[..., Any]) -> None:
    """What wandb-core reports after its own retries is retryable, with the HTTP status when there was one
    (None means the request may have landed, so a retry re-reads first)."""
    error = translate_error(real_failure(emulator(seed=FIXTURE), **faults), "read run abc123")
    assert type(error) is kind
    assert error.status == status
    assert "read run abc123" in str(error)


def test_a_timeout_from_the_real_client_is_retryable_with_unknown_outcome(
        emulator: Callable[..., Any]) -> None:
    """A server that never answers: the client's own timeout fires; retryable, status None."""
    emu = emulator(seed=FIXTURE)
    error = translate_error(real_failure(emu, timeout=1, hang_rate=1.0, hang_seconds=4), "read run abc123")
    assert type(error) is RetryableError
    assert error.status is None


def test_a_missing_run_from_the_real_client_is_not_found(emulator: Callable[..., Any]) -> None:
    """Reading a run that does not exist is NotFound (not retried, not 'W&B refused')."""
    error = translate_error(real_failure(emulator(seed=FIXTURE), "acme/vision/no-such-run"), "read run")
    assert type(error) is NotFound


def test_a_wrong_key_from_the_real_client_is_an_auth_error(emulator: Callable[..., Any]) -> None:
    """A key the server refuses (HTTP 401): AuthError telling what to check; the key is not echoed."""
    emu = emulator(seed=FIXTURE, api_key=TEST_API_KEY)
    wrong = "local-" + "f" * 40
    with pytest.raises(Exception) as info:  # noqa: PT011 - whatever wandb raises is what we classify
        wandb.Api(overrides={"base_url": emu.url}, api_key=wrong)
    error = translate_error(info.value, "connect to W&B", secrets=(wrong,))
    assert type(error) is AuthError
    assert "WANDB_API_KEY" in str(error)
    assert wrong not in str(error)

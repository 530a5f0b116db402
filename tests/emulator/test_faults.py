"""Fault flags seen by the real client: 401 for a wrong key, 500 and 429 retried, hangs and drops."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wandb

from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).with_name("fixture.yaml")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _api(url: str, key: str = TEST_API_KEY) -> Any:
    return wandb.Api(overrides={"base_url": url}, api_key=key)


def test_wrong_api_key_gets_401_and_authentication_error(emulator: Callable[..., Any]) -> None:
    """With --api-key, another key fails wandb.Api() with AuthenticationError; the right one works."""
    emu = emulator(seed=FIXTURE, api_key=TEST_API_KEY)
    with pytest.raises(wandb.errors.AuthenticationError, match="invalid api key"):
        _api(emu.url, "local-" + "f" * 40)
    assert emu.stats()["statuses"].get("401") == 1
    assert _api(emu.url).run("acme/vision/abc123").name == "brave-river-1"
    assert emu.stats()["statuses"]["401"] == 1  # the right key was never refused


def test_fail_rate_answers_500_and_the_client_gives_up(emulator: Callable[..., Any]) -> None:
    """--fail-rate 1 answers every request 500 (Retry-After: 0); the client retries, then raises."""
    emu = emulator(seed=FIXTURE)
    api = _api(emu.url)
    emu.set_faults(fail_rate=1.0)
    with pytest.raises(wandb.errors.CommError, match="500"):
        api.run("acme/vision/abc123")
    stats = emu.stats()
    assert stats["statuses"]["500"] >= 2  # at least one retry happened
    assert stats["operations"]["GetDefaultEntity"] >= 2


def test_throttled_requests_answer_429_and_the_client_retries_through(emulator: Callable[..., Any]) -> None:
    """The next N requests get 429 with Retry-After (set deterministically, not by racing a rate); the
    client waits and succeeds, and exactly N requests were refused."""
    emu = emulator(seed=FIXTURE)
    api = _api(emu.url)
    emu.reset_stats()
    emu.set_faults(throttle_next=2)
    assert api.run("acme/vision/abc123").id == "abc123"
    assert emu.stats()["statuses"]["429"] == 2
    assert emu.set_faults()["throttle_next"] == 0


def test_rate_limiter_is_a_token_bucket() -> None:
    """--rate-limit R: a burst of R (at least 1), then R per second; a new rate starts a full bucket.
    Time is injected: no test waits for the clock."""
    from reconcile.emulator.server import _RateLimiter

    now = [100.0]
    limiter = _RateLimiter(clock=lambda: now[0])
    assert limiter.allow(None)
    assert [limiter.allow(2) for _ in range(3)] == [True, True, False]
    now[0] += 0.5  # one token back at 2/s
    assert [limiter.allow(2) for _ in range(2)] == [True, False]
    now[0] += 10  # never more than the burst
    assert [limiter.allow(2) for _ in range(3)] == [True, True, False]
    assert [limiter.allow(0.5) for _ in range(2)] == [True, False]  # a burst of at least 1
    now[0] += 1.9
    assert not limiter.allow(0.5)
    now[0] += 0.1
    assert limiter.allow(0.5)


def test_rate_limited_answer_carries_retry_headers(emulator: Callable[..., Any]) -> None:
    """A 429 carries Retry-After, RateLimit-Remaining: 0 and RateLimit-Reset (protocol §13.10)."""
    emu = emulator(seed=FIXTURE)
    emu.set_faults(throttle_next=1)
    body = json.dumps({"query": "query Viewer { viewer { id } }"}).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        _OPENER.open(urllib.request.Request(emu.url + "/graphql", data=body), timeout=5)
    assert refused.value.code == 429
    headers = dict(refused.value.headers)
    assert headers["Retry-After"] == "1"
    assert headers["RateLimit-Remaining"] == "0"
    assert headers["RateLimit-Reset"] == "1"
    with _OPENER.open(urllib.request.Request(emu.url + "/graphql", data=body), timeout=5) as response:
        assert response.status == 200  # only the one request


def test_set_faults_never_echoes_the_api_key(emulator: Callable[..., Any]) -> None:
    """The faults endpoint reports only whether a key is set."""
    emu = emulator(seed=FIXTURE, api_key=TEST_API_KEY)
    settings = emu.set_faults(latency_ms=5)
    assert settings["api_key"] == "set"
    assert settings["latency_ms"] == 5
    assert TEST_API_KEY not in json.dumps(settings)


def test_drop_rate_closes_the_connection_mid_response(emulator: Callable[..., Any]) -> None:
    """drop_rate 1 sends half a response and closes the connection."""
    emu = emulator(seed=FIXTURE, drop_rate=1.0)
    body = json.dumps({"query": "query Viewer { viewer { id } }"}).encode()
    request = urllib.request.Request(emu.url + "/graphql", data=body)
    with (
        pytest.raises((http.client.IncompleteRead, ConnectionError)),
        _OPENER.open(request, timeout=5) as response,
    ):
        response.read()


def test_hang_rate_keeps_the_client_waiting(emulator: Callable[..., Any]) -> None:
    """hang_rate 1 answers nothing within the client's timeout."""
    emu = emulator(seed=FIXTURE, hang_rate=1.0, hang_seconds=1.0)
    body = json.dumps({"query": "query Viewer { viewer { id } }"}).encode()
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        _OPENER.open(urllib.request.Request(emu.url + "/graphql", data=body), timeout=0.2)


def test_telemetry_posts_get_an_empty_200(emulator: Callable[..., Any]) -> None:
    """wandb-core's exit-time OpenTelemetry POST is answered 200 with an empty body (protocol §0)."""
    emu = emulator(seed=FIXTURE)
    request = urllib.request.Request(emu.url + "/sdk/otel/v1/metrics", data=b"\x00" * 29)
    with _OPENER.open(request, timeout=5) as response:
        assert (response.status, response.read()) == (200, b"")
    assert emu.stats()["statuses"] == {"200": 1}

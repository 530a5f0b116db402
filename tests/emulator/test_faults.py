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


def test_rate_limit_answers_429_and_the_client_retries_through(emulator: Callable[..., Any]) -> None:
    """Above --rate-limit R requests/s the answer is 429 with Retry-After; the client waits and succeeds."""
    emu = emulator(seed=FIXTURE)
    api = _api(emu.url)
    emu.set_faults(rate_limit=1)
    for run_id in ("abc123", "merge1"):
        assert api.run(f"acme/vision/{run_id}").id == run_id
    assert emu.stats()["statuses"]["429"] >= 1


def test_rate_limited_answer_carries_retry_headers(emulator: Callable[..., Any]) -> None:
    """A 429 carries Retry-After, RateLimit-Remaining: 0 and RateLimit-Reset (protocol §13.10)."""
    emu = emulator(seed=FIXTURE, rate_limit=1)
    body = json.dumps({"query": "query Viewer { viewer { id } }"}).encode()
    statuses, headers = [], {}
    for _ in range(3):
        try:
            with _OPENER.open(urllib.request.Request(emu.url + "/graphql", data=body), timeout=5) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
            headers = dict(exc.headers)
    assert 429 in statuses
    assert headers["Retry-After"] == "1"
    assert headers["RateLimit-Remaining"] == "0"
    assert headers["RateLimit-Reset"] == "1"


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

"""What `reconcile plan` says when it cannot talk to W&B: the real cause, at once, and the API
key blamed only when the server answered 401. Real wandb client, real sockets on loopback."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import reconcile.backend.wandb_api  # noqa: F401  # imported up front: wandb's import time is not the point
from reconcile.cli import main

pytestmark = pytest.mark.integration

SPEC = """\
version: 1
target: {entity: acme, project: vision}
rules:
  - name: tag-all
    match: {all: true}
    add_tags: [seen]
"""
FIXTURE = {"runs": [{"entity": "acme", "project": "vision", "id": "r1", "name": "r1", "state": "finished",
                     "created_at": "2026-09-01T00:00:00Z", "config": {}, "summary": {}}]}


def _plan(tmp_path: Path) -> Result:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    return CliRunner().invoke(main, ["plan", "-f", str(spec)], catch_exceptions=False)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_closed_port_is_reported_as_connection_refused_at_once(
        tmp_path: Path, wandb_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listening: "connection refused" naming the address, well before wandb-core's 20 s timeout."""
    for var in ("WANDB__GRAPHQL_RETRY_MAX", "WANDB__GRAPHQL_RETRY_WAIT_MIN_SECONDS",
                "WANDB__GRAPHQL_RETRY_WAIT_MAX_SECONDS"):
        monkeypatch.delenv(var)  # wandb's own retry defaults, as a user has them
    port = _closed_port()
    wandb_env(f"http://127.0.0.1:{port}")
    started = time.monotonic()
    result = _plan(tmp_path)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    assert "connection refused" in result.output
    assert f"127.0.0.1:{port}" in result.output
    assert "API key" not in result.output and "in time" not in result.output
    assert elapsed < 10, f"took {elapsed:.1f} s to say the connection was refused"


def test_wrong_path_on_the_base_url_names_the_url_not_the_key(tmp_path: Path, emulator: Any,
                                                              wandb_env: Any) -> None:
    """A base URL with a wrong path: the answer was not W&B's API; the key is not blamed."""
    emu = emulator(seed=FIXTURE)
    wandb_env(emu.url + "/wrong/path")
    result = _plan(tmp_path)
    assert result.exit_code == 1, result.output
    assert "did not answer like W&B's API" in result.output
    assert "WANDB_BASE_URL" in result.output
    assert "API key" not in result.output and "WANDB_API_KEY" not in result.output


def test_server_errors_at_connect_are_server_errors_not_a_bad_key(tmp_path: Path, emulator: Any,
                                                                  wandb_env: Any) -> None:
    """Every request answered 500: the message says the server failed (HTTP 500), not the credentials."""
    emu = emulator(seed=FIXTURE, fail_rate=1.0)
    wandb_env(emu.url)
    result = _plan(tmp_path)
    assert result.exit_code == 1, result.output
    assert "HTTP 500" in result.output
    assert "try again later" in result.output
    assert "API key" not in result.output and "credentials" not in result.output


def test_a_401_blames_the_key(tmp_path: Path, emulator: Any, wandb_env: Any) -> None:
    """The server answered 401: the message says the key was rejected and how to set it."""
    emu = emulator(seed=FIXTURE, api_key="local-" + "9" * 40)
    wandb_env(emu.url)
    result = _plan(tmp_path)
    assert result.exit_code == 1, result.output
    assert "rejected the API key" in result.output
    assert "WANDB_API_KEY" in result.output

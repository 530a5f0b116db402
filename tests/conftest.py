"""Shared fixtures: a guard that keeps every test on loopback and away from real
credentials, and the emulator on a free port for integration tests."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Every hypothesis test sees the same examples on every run (CI included), so a failure
# always reproduces; explore more locally with --hypothesis-seed=random.
settings.register_profile("reconcile", derandomize=True, deadline=None)
settings.load_profile("reconcile")

# A suite started in the background by a non-interactive shell (`make test &` in a script) inherits SIGINT
# ignored, and so would every reconcile it starts: the Ctrl-C tests would wait for nothing. A handled
# signal is reset to its default across exec, an ignored one is not: handle it here, once, for them all.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TEST_API_KEY = "local-" + "0123456789abcdef" * 2 + "01234567"  # 46 chars: wandb needs 40+
"""The key tests use; recognisable so the secrets tests can look for it."""

REPO = Path(__file__).resolve().parent.parent


def _is_loopback(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
    else:
        return True  # unix sockets and the like
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _stay_on_loopback(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fail any connection to a non-loopback address; hide the real home, netrc and keys."""
    real_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        if not _is_loopback(address):
            raise AssertionError(f"test tried to reach non-loopback address {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    for var in list(os.environ):
        if var.startswith("WANDB_") or var.startswith("RECONCILE_"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_DIR", str(home / "wandb"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(home / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(home / "wandb-data"))
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.setenv("WANDB_SILENT", "true")
    # wandb-core's own retries: fast and few, so fault tests finish quickly.
    monkeypatch.setenv("WANDB__GRAPHQL_RETRY_MAX", "3")
    monkeypatch.setenv("WANDB__GRAPHQL_RETRY_WAIT_MIN_SECONDS", "1")
    monkeypatch.setenv("WANDB__GRAPHQL_RETRY_WAIT_MAX_SECONDS", "1")


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each test starts with structlog's defaults: an in-process CLI run configures it globally."""
    import structlog

    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def wandb_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], dict[str, str]]:
    """Point WANDB_BASE_URL / WANDB_API_KEY at an emulator URL; returns the env for subprocesses."""

    def point(url: str, api_key: str = TEST_API_KEY) -> dict[str, str]:
        monkeypatch.setenv("WANDB_BASE_URL", url)
        monkeypatch.setenv("WANDB_API_KEY", api_key)
        return dict(os.environ)

    return point


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start emulators on free loopback ports: ``emulator(seed=fixture_dict_or_path, **flags)``.

    Every emulator started is stopped when the test ends.
    """
    from reconcile.emulator.testing import running_emulator

    stack: list[Any] = []

    def start(**kwargs: Any) -> Any:
        kwargs.setdefault("db", tmp_path / f"emulator-{len(stack)}.sqlite")
        cm = running_emulator(**kwargs)
        handle = cm.__enter__()
        stack.append(cm)
        return handle

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)

"""``reconcile emulator``: serve the local W&B-compatible API until SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from reconcile.emulator.fixture import load_fixture
from reconcile.emulator.server import Settings, make_server, serving
from reconcile.emulator.store import Store
from reconcile.errors import ReconcileError


def open_store(db: Path | None, seed: Path | Mapping[str, Any] | None) -> Store:
    """Open (and with ``seed``, reset and fill) the database; no ``db`` means a fresh temporary file."""
    if db is None:
        db = Path(tempfile.mkdtemp(prefix="reconcile-emulator-")) / "emulator.sqlite"
    fixture = load_fixture(seed) if seed is not None else None  # validate before touching the db
    store = Store(db, reset=fixture is not None)
    if fixture is not None:
        store.seed(fixture)
    return store


def run(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    db: Path | None = None,
    seed: Path | None = None,
    api_key: str | None = None,
    latency_ms: int = 0,
    fail_rate: float = 0.0,
    rate_limit: float | None = None,
    config_writes: str = "merge",
    hang_rate: float = 0.0,
    drop_rate: float = 0.0,
) -> int:
    """Serve until SIGINT/SIGTERM, printing ``serving http://HOST:PORT`` first; returns the exit code."""
    store = open_store(db, seed)
    settings = Settings(
        api_key=api_key,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        rate_limit=rate_limit,
        config_writes=config_writes,
        hang_rate=hang_rate,
        drop_rate=drop_rate,
    )
    try:
        server = make_server(store, settings, host=host, port=port)
    except OSError as exc:
        store.close()
        raise ReconcileError(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port (0 picks a free one)"
        ) from exc
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with serving(store, server):
            print(f"serving {server.url}", flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("emulator stopped", file=sys.stderr, flush=True)
    return 0

"""Start the emulator for tests: in a background thread (fast) or as a ``python -m reconcile`` subprocess.

with running_emulator(seed={"runs": [...]}) as emu:
    api = wandb.Api(overrides={"base_url": emu.url}, api_key=KEY)
    ...
    assert emu.stats()["operations"]["UpsertBucket"] == 2
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from reconcile.commands.emulator import open_store
from reconcile.emulator.server import Settings, make_server, serving

# Control requests must not go through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EmulatorHandle:
    """A running emulator: its URL and the test hooks (stats, mutation log, faults)."""

    def __init__(self, url: str, stop: Any, pid: int | None = None) -> None:
        self.url = url
        self.pid = pid
        """The emulator's process id in subprocess mode (None in thread mode)."""
        self._stop = stop
        self._stopped = False

    def _call(self, path: str, payload: Mapping[str, Any] | None = None, timeout: float = 10) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method="GET" if data is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        with _OPENER.open(request, timeout=timeout) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """``{"requests": N, "operations": {name: n}, "statuses": {"200": n}}`` since start or last reset."""
        result: dict[str, Any] = self._call("/_emulator/stats")
        return result

    def reset_stats(self) -> None:
        """Zero the request counters (the mutation log is kept)."""
        self._call("/_emulator/reset-stats", {})

    def mutations(self) -> list[dict[str, Any]]:
        """Every write applied, oldest first: ``{seq, time, operation, run, fields}``."""
        result: list[dict[str, Any]] = self._call("/_emulator/mutations")
        return result

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Change runtime settings: latency_ms, fail_rate, rate_limit, hang_rate, hang_seconds, drop_rate,
        throttle_next, api_key, config_writes. Returns the new settings (API key redacted)."""
        result: dict[str, Any] = self._call("/_emulator/faults", settings)
        return result

    def wait_held(self, timeout: float = 60.0) -> int:
        """Block until a request is held by the ``hold`` setting (a test barrier); how many are held."""
        result: dict[str, int] = self._call(f"/_emulator/held?wait={timeout}", timeout=timeout + 10)
        return result["held"]

    def stop(self) -> None:
        """Stop serving (idempotent); the database file keeps the state."""
        if not self._stopped:
            self._stopped = True
            self._stop()


@contextmanager
def running_emulator(
    *,
    seed: Mapping[str, Any] | Path | str | None = None,
    db: Path | None = None,
    api_key: str | None = None,
    latency_ms: int = 0,
    fail_rate: float = 0.0,
    rate_limit: float | None = None,
    config_writes: str = "merge",
    subprocess: bool = False,
    hang_rate: float = 0.0,
    hang_seconds: float = 35.0,
    drop_rate: float = 0.0,
) -> Iterator[EmulatorHandle]:
    """Run an emulator on 127.0.0.1 and a free port for the duration of the ``with`` block.

    ``seed`` resets ``db`` to that fixture (dict or file); without it an existing ``db`` is served as is.
    ``subprocess=True`` runs ``python -m reconcile emulator`` instead of a thread (a dict seed is
    written to a temporary JSON file).
    """
    if db is None:
        db = Path(tempfile.mkdtemp(prefix="reconcile-emulator-")) / "emulator.sqlite"
    if subprocess:
        with _subprocess_emulator(
            seed=seed,
            db=db,
            api_key=api_key,
            latency_ms=latency_ms,
            fail_rate=fail_rate,
            rate_limit=rate_limit,
            config_writes=config_writes,
        ) as handle:
            if hang_rate or drop_rate:
                handle.set_faults(hang_rate=hang_rate, hang_seconds=hang_seconds, drop_rate=drop_rate)
            yield handle
        return
    store = open_store(db, Path(seed) if isinstance(seed, str) else seed)
    settings = Settings(
        api_key=api_key,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        rate_limit=rate_limit,
        config_writes=config_writes,
        hang_rate=hang_rate,
        hang_seconds=hang_seconds,
        drop_rate=drop_rate,
    )
    with ExitStack() as stack:
        server = stack.enter_context(serving(store, make_server(store, settings), poll_interval=0.05))
        handle = EmulatorHandle(server.url, stack.close)
        try:
            yield handle
        finally:
            handle.stop()


@contextmanager
def _subprocess_emulator(
    *,
    seed: Mapping[str, Any] | Path | str | None,
    db: Path,
    api_key: str | None,
    latency_ms: int,
    fail_rate: float,
    rate_limit: float | None,
    config_writes: str,
) -> Iterator[EmulatorHandle]:
    argv = [
        sys.executable,
        "-m",
        "reconcile",
        "emulator",
        "--port",
        "0",
        "--db",
        str(db),
        "--latency-ms",
        str(latency_ms),
        "--fail-rate",
        str(fail_rate),
        "--config-writes",
        config_writes,
    ]
    if isinstance(seed, Mapping):
        seed_file = db.with_suffix(".seed.json")
        seed_file.write_text(json.dumps(seed, default=str), encoding="utf-8")
        argv += ["--seed", str(seed_file)]
    elif seed is not None:
        argv += ["--seed", str(seed)]
    if rate_limit is not None:
        argv += ["--rate-limit", str(rate_limit)]
    env = dict(os.environ)
    if api_key:
        env["RECONCILE_EMULATOR_API_KEY"] = api_key  # via env, so the key is not visible in `ps`
    proc = subprocess_popen(argv, env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("serving "):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise RuntimeError(f"emulator did not start: {line.strip()} {err.strip()}")
        url = line.split(" ", 1)[1].strip()

        def stop() -> None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except Exception:
                proc.kill()
                raise

        handle = EmulatorHandle(url, stop, pid=proc.pid)
        try:
            yield handle
        finally:
            handle.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def subprocess_popen(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start the emulator process with piped text stdout/stderr."""
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

"""A real MLflow tracking server for the tests: SQLite backend store, local artifact root,
on a free loopback port, stopped (with its workers) when the test ends.

The server runs from its own environment: the full ``mlflow`` package pins graphql-core
below the version the emulator is written against, so ``make install`` puts it in
``.venv-mlflow`` beside the project's ``.venv`` (which has ``mlflow-skinny``, the client
reconcile imports). ``RECONCILE_MLFLOW_SERVER`` may name another ``mlflow`` executable.
Without one the tests fail, saying how to install it: they are never skipped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

SERVER = os.environ.get("RECONCILE_MLFLOW_SERVER")  # read before the guard fixture hides RECONCILE_*
STARTUP_SECONDS = 120.0  # first start migrates the SQLite schema; slow on a loaded 2-core machine


def server_executable() -> Path:
    """The ``mlflow`` executable of an environment with the full ``mlflow`` package."""
    path = Path(SERVER) if SERVER else REPO / ".venv-mlflow" / "bin" / "mlflow"
    if not path.exists():
        pytest.fail(f"no MLflow server at {path}: run `make install` (it creates .venv-mlflow with the "
                    "full mlflow package), or point RECONCILE_MLFLOW_SERVER at an `mlflow` executable")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class MlflowServer:
    """A running server: its tracking URI and where it keeps its data."""

    uri: str
    root: Path


@contextlib.contextmanager
def running_mlflow(root: Path, *, workers: int = 1) -> Iterator[MlflowServer]:
    """Start ``mlflow server`` under ``root`` with ``workers`` worker processes; stop it and them on exit."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # MLflow 3's server also starts a job runner and huey consumers (GenAI jobs) that poll the store:
    # about a fifth of a core at rest on this 2-core machine, and nothing an import uses.
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [str(server_executable()), "server",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
         # uvicorn's supervisor restarts a worker that misses a 5 s health check: on a loaded machine
         # that kills busy workers mid-request (seen at load 20), so it waits longer.
         *(["--uvicorn-opts", "--timeout-worker-healthcheck 120"] if workers > 1 else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"the MLflow server exited ({process.returncode}):\n"
                            + (root / "server.log").read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the MLflow server did not answer within {STARTUP_SECONDS:.0f}s:\n"
                            + (root / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.25)
        yield MlflowServer(uri=uri, root=root)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()

"""What `reconcile plan` says when it cannot talk to W&B: the real cause, at once, and the API
key blamed only when the server answered 401. Real wandb client, real sockets on loopback."""

from __future__ import annotations

import contextlib
import http.server
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import reconcile.backend.wandb_api  # noqa: F401  # imported up front: wandb's import time is not the point
from reconcile.cli import main
from tests.conftest import TEST_API_KEY

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


# ---------------------------------------------------------------- a server that is not W&B (a proxy)


class _Failing(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's status and body, as a failing proxy does."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body, kind = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[Callable[[int, bytes, str], str]]:
    """``failing_server(status, body, content_type)``: the URL of a loopback server answering only that."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(status: int, body: bytes, kind: str) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
        server.answer = (status, body, kind)  # type: ignore[attr-defined]
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _user_env(url: str, tmp_path: Path) -> dict[str, str]:
    """A subprocess environment as a user has it (wandb's own retry defaults), pointed at ``url``;
    the client's timeout is cut to 5 s so the test is short (the failure is the same at 19 s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB__GRAPHQL_RETRY")}
    env.update(WANDB_BASE_URL=url, WANDB_API_KEY=TEST_API_KEY, WANDB_HTTP_TIMEOUT="5", HOME=str(tmp_path))
    return env


def _start_plan(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    return subprocess.Popen([sys.executable, "-m", "reconcile", "plan", "-f", str(spec)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def _error_then_exit(proc: subprocess.Popen[str], *, limit: float = 240) -> tuple[str, float]:
    """The first stderr line (the error) and the seconds from it to the process's end (inf: still running
    after ``limit``; then it is killed)."""
    assert proc.stderr is not None
    first = proc.stderr.readline()
    printed = time.monotonic()
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return first, math.inf
    return first + proc.stderr.read(), time.monotonic() - printed


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize(("status", "body", "kind"), [
    (502, b'{"errors": [{"message": "upstream unavailable"}]}', "application/json"),
    (503, b"<html><body><h1>503 Service Temporarily Unavailable</h1><hr>nginx</body></html>", "text/html"),
])
def test_a_failing_proxy_is_named_with_its_http_status_not_a_timeout(
        tmp_path: Path, failing_server: Any, status: int, body: bytes, kind: str) -> None:
    """A non-W&B server answering 5xx: wandb-core retries it until the client times out; the error names
    the server and the status it answered (and its words), not a busy service; the process ends at once."""
    url = failing_server(status, body, kind)
    with _start_plan(tmp_path, _user_env(url, tmp_path)) as proc:
        output, to_exit = _error_then_exit(proc)
    assert proc.returncode == 1, output
    assert f"the server at {url} answered HTTP {status}" in output, output
    assert ("upstream unavailable" if status == 502 else "503 Service Temporarily Unavailable") in output
    assert "busy" not in output and "in time" not in output and "API key" not in output
    assert "Traceback" not in output and "Exception ignored" not in output, output
    assert to_exit < 15, f"the process ran {to_exit:.1f} s after reporting the error"


@pytest.mark.parametrize("interrupt", [False, True], ids=["waits", "ctrl-c"])
def test_the_process_ends_though_wandb_core_does_not(tmp_path: Path, failing_server: Any,
                                                     interrupt: bool) -> None:
    """wandb-core stuck (stopped with SIGSTOP before the error): the process still ends a few seconds
    after its error, and a Ctrl-C then ends it too, without a traceback (wandb's own exit hook waits
    for wandb-core without a limit, and a Ctrl-C there printed one)."""
    url = failing_server(502, b"bad gateway", "text/plain")
    with _start_plan(tmp_path, _user_env(url, tmp_path)) as proc:
        _end_with_wandb_core_stopped(proc, interrupt=interrupt)


def _end_with_wandb_core_stopped(proc: subprocess.Popen[str], *, interrupt: bool) -> None:
    stopped: list[int] = []
    deadline = time.monotonic() + 120
    while not stopped and time.monotonic() < deadline and proc.poll() is None:
        stopped = _children(proc.pid)  # wandb-core: the one child the CLI starts
        time.sleep(0.05)
    assert stopped, "wandb-core was not started"
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        printed = time.monotonic()
        if interrupt:
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        to_exit = time.monotonic() - printed
    finally:
        for pid in stopped:  # before reading on: wandb-core holds the other end of the stderr pipe
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    output = first + proc.stderr.read()
    assert "Error: " in first, output
    assert "Traceback" not in output and "Exception ignored" not in output, output
    assert to_exit < 15, f"the process ran {to_exit:.1f} s after its error: {output}"


def test_ctrl_c_while_waiting_for_a_failing_server_ends_at_once(tmp_path: Path, failing_server: Any) -> None:
    """Ctrl-C while wandb-core is still retrying a 5xx (the client's timeout far off): "Interrupted.",
    exit 130, no traceback, and the process ends within seconds (wandb-core is not waited for)."""
    url = failing_server(502, b"bad gateway", "text/plain")
    env = {**_user_env(url, tmp_path), "WANDB_HTTP_TIMEOUT": "120"}
    with _start_plan(tmp_path, env) as proc:
        deadline = time.monotonic() + 120
        while not _children(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(3)  # wandb-core started and retrying the 502s
        assert proc.poll() is None, "the plan ended before the interrupt"
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        to_exit = time.monotonic() - sent
        assert proc.stderr is not None
        output = proc.stderr.read()
    assert proc.returncode == 130, output
    assert "Interrupted." in output
    assert "Traceback" not in output and "Exception ignored" not in output, output
    assert to_exit < 15, f"the process ran {to_exit:.1f} s after Ctrl-C"

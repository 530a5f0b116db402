"""The emulator's HTTP layer: ``/graphql``, file download/upload, telemetry sinks, faults and stats.

A ``ThreadingHTTPServer`` (the client keeps about 10 requests in flight, protocol §11) whose handler
writes each small response in one send with TCP_NODELAY set: two sends on a keep-alive socket cost
~44 ms per request through Nagle + delayed ACK (protocol §0).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import json
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from reconcile.emulator import artifact_uploads, artifacts, file_stream
from reconcile.emulator.resolvers import Executor, operation_name
from reconcile.emulator.store import Store, StoreError

_TELEMETRY_PREFIXES = ("/sdk/otel/", "/v1/", "/otel/")


@dataclass
class Settings:
    """Runtime behaviour, changeable while serving (``POST /_emulator/faults``)."""

    api_key: str | None = None
    latency_ms: int = 0
    fail_rate: float = 0.0
    rate_limit: float | None = None
    config_writes: str = "merge"
    hang_rate: float = 0.0
    hang_seconds: float = 35.0  # past wandb-core's ~30 s per-attempt timeout (protocol §10)
    drop_rate: float = 0.0
    throttle_next: int = 0  # answer this many next requests with 429 (deterministic rate-limit tests)
    hold: str | None = None  # a test barrier: requests of this GraphQL operation wait until it is unset...
    hold_after: int = 0  # ... once this many more of them have been let through
    crash_after: float = 300.0  # seconds without a file_stream request before a live run is crashed

    def public(self) -> dict[str, Any]:
        """The settings without the API key (never echoed back, only whether one is set)."""
        data = asdict(self)
        data["api_key"] = "set" if self.api_key else None
        return data


class _RateLimiter:
    """A token bucket of ``rate`` tokens per second and a burst of ``rate`` (at least 1)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = 0.0
        self._stamp = clock()
        self._rate: float | None = None

    def allow(self, rate: float | None) -> bool:
        if rate is None:
            return True
        with self._lock:
            now = self._clock()
            if rate != self._rate:
                self._rate, self._tokens = rate, max(rate, 1.0)
            self._tokens = min(max(rate, 1.0), self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


class Stats:
    """Request counters: total, per GraphQL operation name, per HTTP status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.operations: Counter[str] = Counter()
            self.statuses: Counter[str] = Counter()

    def request(self, operation: str | None) -> None:
        with self._lock:
            self.requests += 1
            if operation:
                self.operations[operation] += 1

    def status(self, code: int) -> None:
        with self._lock:
            self.statuses[str(code)] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "operations": dict(self.operations),
                "statuses": dict(self.statuses),
            }


class UrlSigner:
    """Upload URLs that are their own credential, as W&B's signed storage URLs are: the SDK's uploader
    PUTs a run's files (and wandb-core an artifact's) to the URL CreateRunFiles (CreateArtifactFiles,
    CreateArtifactManifest) returned, with no API key, so with ``--api-key`` such a PUT is accepted on
    the URL's signature (an HMAC of its path with a secret of this server) instead of the key."""

    PARAM = "X-Emulator-Signature"

    def __init__(self) -> None:
        self._secret = os.urandom(32)

    def _digest(self, path: str) -> str:
        return hmac.new(self._secret, path.encode(), hashlib.sha256).hexdigest()

    def sign(self, url: str) -> str:
        """``url`` with the signature of its path."""
        return f"{url}?{self.PARAM}={self._digest(urlsplit(url).path)}"

    def valid(self, target: str) -> bool:
        """Whether a request target (path and query) carries the signature of its path."""
        parts = urlsplit(target)
        given = parse_qs(parts.query).get(self.PARAM, [""])[0]
        return bool(given) and hmac.compare_digest(given, self._digest(parts.path))


class EmulatorServer(ThreadingHTTPServer):
    """The HTTP server plus everything handlers share: store, executor, settings, stats."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], store: Store, settings: Settings, *, rng: random.Random | None = None
    ) -> None:
        self.store = store
        self.executor = Executor(store)
        self.signer = UrlSigner()
        self.settings = settings
        self.stats = Stats()
        self.limiter = _RateLimiter()
        self.rng = rng or random.Random()
        self.rng_lock = threading.Lock()
        self.hold_changed = threading.Condition()
        self.held = 0
        super().__init__(address, _Handler)

    def expire_heartbeats(self) -> None:
        """Crash runs that stopped streaming (an indexed read; a write only when some did)."""
        file_stream.expire_heartbeats(self.store, self.settings.crash_after)

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` this server answers on."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def wait_if_held(self, operation: str | None, *, limit: float = 120.0) -> None:
        """The ``hold`` barrier: block this request while its operation is held (at most ``limit`` s)."""
        with self.hold_changed:
            settings = self.settings
            if settings.hold is None or operation != settings.hold:
                return
            if settings.hold_after > 0:
                settings.hold_after -= 1
                return
            self.held += 1
            self.hold_changed.notify_all()
            self.hold_changed.wait_for(lambda: settings.hold != operation, timeout=limit)
            self.held -= 1

    def wait_for_held(self, timeout: float) -> int:
        """How many requests are held, once at least one is (or ``timeout`` seconds passed)."""
        with self.hold_changed:
            self.hold_changed.wait_for(lambda: self.held > 0, timeout=timeout)
            return self.held

    def take_throttle(self) -> bool:
        """True (and one fewer left) while ``throttle_next`` requests remain to be answered 429."""
        with self.rng_lock:
            if self.settings.throttle_next <= 0:
                return False
            self.settings.throttle_next -= 1
            return True

    def chance(self, rate: float) -> bool:
        """True with probability ``rate``."""
        if rate <= 0:
            return False
        with self.rng_lock:
            return self.rng.random() < rate


def _json_body(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY: see module docstring
    server: EmulatorServer
    server_version = "reconcile-emulator"
    sys_version = ""

    # Never log requests: headers carry the API key, and stderr noise slows tests.
    def log_message(self, format: str, *args: Any) -> None:
        return

    # ---- plumbing ------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        content_type: str = "application/json",
    ) -> None:
        """Write status line, headers and body in a single send (protocol §0 latency trap)."""
        self.server.stats.status(status)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _send_stream(self, size: int, chunks: Iterable[bytes]) -> None:
        self.server.stats.status(200)
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
        ).encode("latin-1")
        first = True
        for chunk in chunks:
            self.wfile.write(head + chunk if first else chunk)
            first = False
        if first:
            self.wfile.write(head)

    def _authorized(self) -> bool:
        expected = self.server.settings.api_key
        if not expected:
            return True
        if self.command == "PUT" and self.server.signer.valid(self.path):
            return True  # a signed upload URL carries no key (W&B's storage URLs do not either)
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            _, _, key = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(key.encode(), expected.encode())

    def _faults(self) -> bool:
        """Apply latency, hang, drop, rate limit, failure and auth; True when the request was answered."""
        settings, server = self.server.settings, self.server
        if settings.latency_ms:
            time.sleep(settings.latency_ms / 1000)
        if server.chance(settings.hang_rate):
            time.sleep(settings.hang_seconds)
            self.close_connection = True
            server.stats.status(0)
            return True
        if server.chance(settings.drop_rate):
            # Promise a body, send half of it, then close: the client sees a truncated response.
            body = _json_body({"data": None, "padding": "x" * 64})
            self.wfile.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
                f"\r\n\r\n".encode()
                + body[: len(body) // 2]
            )
            self.close_connection = True
            server.stats.status(0)
            return True
        if server.take_throttle() or not server.limiter.allow(settings.rate_limit):
            self._send(
                429,
                _json_body({"errors": [{"message": "rate limit exceeded"}]}),
                [("Retry-After", "1"), ("RateLimit-Remaining", "0"), ("RateLimit-Reset", "1")],
            )
            return True
        if server.chance(settings.fail_rate):
            self._send(
                500,
                _json_body({"errors": [{"message": "injected failure (--fail-rate)"}]}),
                [("Retry-After", "0")],
            )
            return True
        if not self._authorized():
            self._send(401, _json_body({"errors": [{"message": "invalid api key"}]}))
            return True
        return False

    def _base_url(self) -> str:
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.server.url

    # ---- routes --------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/_emulator/"):
            self._control_get(path)
            return
        self.server.stats.request("GET /files" if path.startswith(("/files/", "/artifacts/")) else None)
        if self._faults():
            return
        if path.startswith("/artifacts/"):
            version, _, name = path[len("/artifacts/"):].partition("/")
            stored = artifacts.file_content(self.server.store, version, unquote(name))
            if stored is None:
                self._send(404, b"file not found", content_type="text/plain")
                return
            self._send_stream(*stored)
            return
        if path.startswith("/files/"):
            parts = [unquote(p) for p in path[len("/files/") :].split("/", 3)]
            found = self.server.store.file_content(*parts) if len(parts) == 4 else None
            if found is None:
                self._send(404, b"file not found", content_type="text/plain")
                return
            self._send_stream(*found)
            return
        if path in ("/", "/healthz"):
            self._send(200, b"ok", content_type="text/plain")
            return
        self._send(404, b"not found", content_type="text/plain")

    def do_PUT(self) -> None:
        body = self._read_body()
        path = urlsplit(self.path).path
        self.server.stats.request("PUT /upload")
        if self._faults():
            return
        if artifact_uploads.put(self.server.store, path, body):
            self._send(200)
            return
        parts = (
            [unquote(p) for p in path[len("/upload/") :].split("/", 3)] if path.startswith("/upload/") else []
        )
        if len(parts) != 4:
            self._send(404, b"not found", content_type="text/plain")
            return
        try:
            entity, project, run, name = parts
            self.server.store.put_file(entity, project, run, name, body)
        except StoreError as exc:
            self._send(403, str(exc).encode(), content_type="text/plain")
            return
        self._send(200)

    def do_POST(self) -> None:
        body = self._read_body()
        path = urlsplit(self.path).path
        if path.startswith("/_emulator/"):
            self._control_post(path, body)
            return
        if path.startswith("/files/") and path.endswith("/file_stream"):
            self._file_stream(path, body)
            return
        if path != "/graphql":
            self.server.stats.request(None)
            # Telemetry (wandb-core's OpenTelemetry metrics at exit) and anything else: 200, empty.
            self._send(200, content_type="text/plain")
            return
        try:
            request = json.loads(body or b"{}")
            query = request.get("query") or ""
            variables = request.get("variables")
            if isinstance(variables, str):  # some GraphQL clients send the variables as a JSON string
                variables = json.loads(variables or "{}")
            if not isinstance(query, str) or (variables is not None and not isinstance(variables, dict)):
                raise ValueError("query must be a string and variables an object")
        except ValueError as exc:
            self.server.stats.request(None)
            self._send(400, _json_body({"errors": [{"message": f"bad request body: {exc}"}]}))
            return
        self.server.stats.request(operation_name(query))
        if self._faults():
            return
        self.server.wait_if_held(operation_name(query))
        self.server.expire_heartbeats()
        settings = self.server.settings
        envelope = self.server.executor.run(
            query,
            variables,
            request.get("operationName"),
            base_url=self._base_url(),
            config_writes=settings.config_writes,
            sign=self.server.signer.sign,
        )
        self._send(200, _json_body(envelope))

    def _file_stream(self, path: str, body: bytes) -> None:
        self.server.stats.request("POST file_stream")
        if self._faults():
            return
        parts = [unquote(p) for p in path[len("/files/") : -len("/file_stream")].split("/")]
        if len(parts) != 3:
            self._send(404, b"not found", content_type="text/plain")
            return
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        try:
            entity, project, run = parts
            answer = file_stream.apply(self.server.store, entity, project, run, body)
        except file_stream.FileStreamError as exc:
            self._send(400, _json_body({"error": str(exc)}))
            return
        except StoreError as exc:
            self._send(404, _json_body({"error": str(exc)}))
            return
        self._send(200, _json_body(answer))

    # ---- control endpoints (not counted, never faulted, no auth: loopback test hooks) -------------
    def _control_get(self, path: str) -> None:
        if path == "/_emulator/stats":
            self._send(200, _json_body(self.server.stats.snapshot()))
        elif path == "/_emulator/mutations":
            self._send(200, _json_body(self.server.store.mutations()))
        elif path == "/_emulator/faults":
            self._send(200, _json_body(self.server.settings.public()))
        elif path == "/_emulator/held":
            wait = float(parse_qs(urlsplit(self.path).query).get("wait", ["0"])[0])
            self._send(200, _json_body({"held": self.server.wait_for_held(min(wait, 120.0))}))
        else:
            self._send(404, b"not found", content_type="text/plain")

    def _control_post(self, path: str, body: bytes) -> None:
        if path == "/_emulator/reset-stats":
            self.server.stats.reset()
            self._send(200, _json_body(self.server.stats.snapshot()))
            return
        if path != "/_emulator/faults":
            self._send(404, b"not found", content_type="text/plain")
            return
        try:
            changes = json.loads(body or b"{}")
            known = {f.name for f in fields(Settings)}
            unknown = set(changes) - known
            if unknown:
                raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(known)}")
        except ValueError as exc:
            self._send(400, _json_body({"errors": [{"message": str(exc)}]}))
            return
        with self.server.hold_changed:
            for key, value in changes.items():
                setattr(self.server.settings, key, value)
            self.server.hold_changed.notify_all()  # a request held by `hold` may go on now
        self._send(200, _json_body(self.server.settings.public()))


def make_server(
    store: Store, settings: Settings, *, host: str = "127.0.0.1", port: int = 0
) -> EmulatorServer:
    """Bind an emulator server (``port=0`` picks a free port); call ``serve_forever()`` to serve."""
    server = EmulatorServer((host, port), store, settings)
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return server


@contextmanager
def serving(store: Store, server: EmulatorServer, *, poll_interval: float = 0.5) -> Iterator[EmulatorServer]:
    """Serve ``server`` in a background thread for the block; then stop it and close ``store``."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True, name="emulator"
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        store.close()

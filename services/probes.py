"""The `/health` contract of every service; `GET /metrics` and `GET /health` for the services
with a plain blocking loop (alerter, dispatcher, scheduler); the socket helpers every probe server uses.

`HealthReport` is what every service's `/health` answers, so that one readiness probe
works for all of them: the HTTP code alone decides, the body explains. Each service keeps
its own pure "snapshot → `HealthReport`" function beside its metrics
(`services.scorer.health`, `services.delivery.health`, `services.alerting.metrics`,
`services.learning.scheduler_metrics`).

The scorer serves its probes on faust's event loop (services.scorer.probe_server); the
alerter, the dispatcher and the scheduler have no event loop to share, so a small threaded HTTP server
serves them from a daemon thread (two read-only endpoints need nothing more). Every service
binds its socket before anything else starts (`bind_socket`), so a taken port fails the
command in one line and port 0 is known before it is printed. This module imports no torch
and no faust: the alerter, dispatcher and scheduler must not pay seconds and hundreds of MB for probes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (0: a free port). Raises `OSError` (e.g. the port
    is taken, `host` is not an address of this machine)."""
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family)


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# `starting`: not working yet (no partition assigned, no cycle finished); `degraded`: working
# but not well (the database is away, the loop stalled); `standby`: healthy, waiting to take
# over from the active instance (the alerter).
Status = Literal["ok", "degraded", "starting", "standby"]
HTTP_OK = 200
HTTP_UNAVAILABLE = 503
SERVING: frozenset[Status] = frozenset({"ok", "standby"})


@dataclass(frozen=True, slots=True)
class HealthReport:
    """A service's `/health` answer. 200 when `ok` and when `standby` (an orchestrator must
    keep a standby running, it is the one that takes over), 503 while `starting` or
    `degraded`: a load balancer or a readiness probe acts on the code without reading the
    body, which is JSON for humans."""

    status: Status
    body: dict[str, Any]

    @property
    def http_status(self) -> int:
        return HTTP_OK if self.status in SERVING else HTTP_UNAVAILABLE


def iso_timestamp(timestamp: float | None) -> str | None:
    """Unix seconds as the ISO 8601 UTC time (milliseconds) the health bodies show."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


# Limits of the threaded server, which holds a thread per connection: a client that opens
# connections and never finishes a request (or sends a byte now and then, which no socket
# timeout trips) would otherwise hold threads for ever and starve the service of them. A
# probe's request is one short line and a few headers, answered at once.
REQUEST_DEADLINE_SECONDS = 10.0  # a connection is shut down this long after it was accepted
MAX_CONNECTIONS = 16  # connections served at once; more are closed at once (a probe retries)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        sock: socket.socket,
        registry: CollectorRegistry,
        health: Callable[[], HealthReport],
        *,
        deadline: float = REQUEST_DEADLINE_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock  # already bound and listening
        self.registry = registry
        self.health = health
        self._deadline = deadline
        self._max_connections = max_connections
        self._open: dict[socket.socket, float] = {}  # connection -> when it must be done
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            full = len(self._open) >= self._max_connections
            if not full:
                self._open[request] = time.monotonic() + self._deadline
        if full:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:  # every connection ends here
        with self._open_lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Called by `serve_forever` between polls: shut down connections past their deadline
        (the thread serving one then reads end-of-file and finishes)."""
        now = time.monotonic()
        with self._open_lock:
            expired = [conn for conn, due in self._open.items() if due <= now]
        for conn in expired:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, content_type, encoder(self.server.registry))
        elif path == "/health":
            report = self.server.health()
            self._send(report.http_status, "application/json", json.dumps(report.body).encode())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass


class ProbeServer:
    """Serves `registry` at /metrics and `health()` at /health on the bound `sock` until
    `stop()`; a context manager. `close_socket=False` leaves the socket open at `stop()`, for
    a server that takes it over (the scorer worker's, after its model has loaded). Each
    connection is shut down `deadline` seconds after it was accepted, and at most
    `max_connections` are served at once (`REQUEST_DEADLINE_SECONDS`, `MAX_CONNECTIONS`)."""

    def __init__(
        self,
        sock: socket.socket,
        registry: CollectorRegistry,
        health: Callable[[], HealthReport],
        *,
        name: str,
        close_socket: bool = True,
        deadline: float = REQUEST_DEADLINE_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._sock = sock
        self._close_socket = close_socket
        self._server = _Server(sock, registry, health, deadline=deadline, max_connections=max_connections)
        # a short poll interval: stop() waits for the loop to notice
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name=name, daemon=True
        )

    @property
    def url(self) -> str:
        return socket_url(self._sock)

    def start(self) -> Self:
        self._thread.start()
        log.info("serving metrics and health", extra={"url": self.url, "paths": ["/metrics", "/health"]})
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        if self._close_socket:
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

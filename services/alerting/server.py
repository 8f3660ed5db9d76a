"""`GET /metrics` and `GET /health` of the alerter, from a thread beside its loop.

The scorer serves these on faust's event loop; the alerter's loop is a plain blocking
consumer loop, so the server runs in a daemon thread instead (the standard library's
threading HTTP server: two read-only endpoints need nothing more), and `/health` reports a
loop that stopped coming round (see `alerter_health`). As for the worker, the socket is
bound by the caller before anything else starts (`bind_socket`), so a taken port fails the
command in one line and port 0 is known before it is printed.

`bind_socket` and `socket_url` repeat services.observability.server's: importing that
package imports the scorer, and with it torch (5 s and hundreds of MB the alerter does not
need).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder

from services.alerting.metrics import AlerterMetrics

log = logging.getLogger(__name__)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (0: a free port). Raises `OSError` (e.g. the port
    is taken, `host` is not an address of this machine)."""
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family)


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, metrics: AlerterMetrics) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock  # already bound and listening
        self.metrics = metrics


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, content_type, encoder(self.server.metrics.registry))
        elif path == "/health":
            report = self.server.metrics.health()
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
    """Serves `metrics` on `sock` until `stop()`; a context manager."""

    def __init__(self, metrics: AlerterMetrics, sock: socket.socket) -> None:
        self._sock = sock
        self._server = _Server(sock, metrics)
        self._thread = threading.Thread(target=self._server.serve_forever, name="alerter-probes", daemon=True)

    @property
    def url(self) -> str:
        return socket_url(self._sock)

    def start(self) -> ProbeServer:
        self._thread.start()
        log.info("serving metrics and health", extra={"url": self.url, "paths": ["/metrics", "/health"]})
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> ProbeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""`GET /metrics` and `GET /health` of the dispatcher, from a thread of their own.

The dispatcher is a plain blocking loop (no event loop to share, unlike the faust
worker), so a small threaded HTTP server serves a socket bound before the loop starts:
a taken port then fails `finsent dispatcher` in one line (see `bind_socket`).
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder

from services.delivery.health import dispatcher_health
from services.delivery.metrics import DispatcherMetrics


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (0: a free port); `OSError` if it cannot be had.
    (As services.observability.bind_socket, whose package would pull in torch.)"""
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family)


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, metrics: DispatcherMetrics) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.metrics = metrics


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._reply(200, encoder(self.server.metrics.registry), content_type)
        elif path == "/health":
            report = dispatcher_health(self.server.metrics.snapshot())
            self._reply(report.http_status, json.dumps(report.body).encode(), "application/json")
        else:
            self._reply(404, b"not found\n", "text/plain")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class MetricsServer:
    """Serves `metrics` on the bound `sock` until `stop()`."""

    def __init__(self, metrics: DispatcherMetrics, sock: socket.socket) -> None:
        self._server = _Server(sock, metrics)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="dispatcher-metrics", daemon=True
        )  # a short poll interval: stop() waits for it

    @property
    def url(self) -> str:
        return socket_url(self._server.socket)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

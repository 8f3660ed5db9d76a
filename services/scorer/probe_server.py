"""`GET /metrics` and `GET /health` of a scorer worker, served on the worker's event loop.

Why the event loop and not a thread of its own: a worker whose loop is blocked cannot
heartbeat or consume either, and a probe that times out on `/health` then says so.

Why the socket is bound before the worker starts (`services.probes.bind_socket`): a taken port must end
`finsent worker` with one line before the model loads and the group is joined, not as a
traceback from inside faust; and port 0 must be resolved to the real port so it can be
printed. aiohttp then serves the already bound socket (`web.SockSite`).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from aiohttp import web
from mode import Service
from prometheus_client.exposition import choose_encoder

from services.probes import socket_url
from services.scorer.health import health_report
from services.scorer.metrics import ScorerMetrics

__all__ = ["ObservabilityServer", "create_web_app"]

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 2.0


def create_web_app(metrics: ScorerMetrics) -> web.Application:
    """The observability web app; it only reads `metrics`."""

    async def get_metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(metrics.registry), headers={"Content-Type": content_type})

    async def get_health(_: web.Request) -> web.Response:
        report = health_report(metrics.health_snapshot())
        return web.json_response(report.body, status=report.http_status)

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/health", get_health)
    return app


class ObservabilityServer(Service):
    """A mode service (give it to `faust.Worker(app, server)`): it starts before the app, so
    `/health` answers `starting` while the group is joined, and stops after it."""

    def __init__(self, metrics: ScorerMetrics, sock: socket.socket, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics
        self._sock = sock
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return socket_url(self._sock)

    async def on_start(self) -> None:
        runner = web.AppRunner(
            create_web_app(self._metrics), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SECONDS
        )
        await runner.setup()
        await web.SockSite(runner, self._sock).start()
        self._runner = runner
        log.info("serving metrics and health", extra={"url": self.url, "paths": ["/metrics", "/health"]})

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._sock.close()

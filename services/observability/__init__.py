"""Observability of the scorer worker: Prometheus metrics, `/health`, structured batch logs.

`ScorerMetrics` is fed by the scorer (`build_app(..., metrics=...)`) with `BatchSummary`s
computed by the pure `summarize_batch`; `ObservabilityServer` serves it on the worker's
event loop at `GET /metrics` and `GET /health` (whose status is the pure `health_report`).
"""

from services.observability.health import HealthReport, HealthSnapshot, Status, health_report, health_status
from services.observability.metrics import ScorerMetrics
from services.observability.server import ObservabilityServer, bind_socket, create_web_app, socket_url
from services.observability.summary import (
    STAGES,
    BatchSummary,
    Stage,
    batch_log_fields,
    dead_letter_log_fields,
    summarize_batch,
)

__all__ = [
    "STAGES",
    "BatchSummary",
    "HealthReport",
    "HealthSnapshot",
    "ObservabilityServer",
    "ScorerMetrics",
    "Stage",
    "Status",
    "batch_log_fields",
    "bind_socket",
    "create_web_app",
    "dead_letter_log_fields",
    "health_report",
    "health_status",
    "socket_url",
    "summarize_batch",
]

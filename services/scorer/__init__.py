"""The scorer: per-batch scoring (framework-free) and the database sink.

`score_batch` (= `parse_batch` + `predict_items`) turns a micro-batch of raw Kafka records
into scored items and dead letters (`start_predict_items` queues a slice's model passes and
returns a `PendingSlice` to finish later, so a worker can prepare the next slice meanwhile);
`dead_letter_record` is the DLQ record of a dead letter (its value bounded); `store_batch`
writes the scored items in one transaction, retrying connection errors with backoff
(the policy and the rule of what is retried: `services.retry`).
The faust agent and a plain consumer loop both wrap these two calls.

Observability of the worker: `ScorerMetrics` (Prometheus, and the state `/health` is
decided from) is fed with `BatchSummary`s computed by the pure `summarize_batch`;
`health_report` turns its snapshot into the `/health` answer every service shares
(`services.probes.HealthReport`), and `probe_server.ObservabilityServer` serves both on the
worker's event loop. Like `app` (faust), `probe_server` (aiohttp, mode) is imported from its
module, so that importing the batch code stays light.

`run_worker` starts a scoring worker from settings (what `finsent worker` runs; a start-up
problem is a one-line `WorkerStartError`); it imports torch and faust only when called.
"""

from services.scorer.batch import (
    BatchResult,
    DeadLetter,
    ParsedBatch,
    PendingSlice,
    PredictorLike,
    RawRecord,
    dead_letter_headers,
    parse_batch,
    predict_items,
    score_batch,
    start_predict_items,
)
from services.scorer.dead_letters import (
    MAX_DEAD_LETTER_VALUE_BYTES,
    DeadLetterRecord,
    dead_letter_record,
    header_only,
    is_record_rejection,
)
from services.scorer.health import HealthSnapshot, health_report, health_status
from services.scorer.metrics import ScorerMetrics
from services.scorer.runner import WorkerStartError, apply_gil_switch_interval, run_worker
from services.scorer.sink import OnRetry, store_batch
from services.scorer.summary import (
    STAGES,
    BatchSummary,
    Stage,
    batch_log_fields,
    dead_letter_log_fields,
    summarize_batch,
)

__all__ = [
    "MAX_DEAD_LETTER_VALUE_BYTES",
    "STAGES",
    "BatchResult",
    "BatchSummary",
    "DeadLetter",
    "DeadLetterRecord",
    "HealthSnapshot",
    "PendingSlice",
    "PredictorLike",
    "RawRecord",
    "ScorerMetrics",
    "Stage",
    "OnRetry",
    "ParsedBatch",
    "WorkerStartError",
    "apply_gil_switch_interval",
    "batch_log_fields",
    "dead_letter_headers",
    "dead_letter_log_fields",
    "dead_letter_record",
    "header_only",
    "health_report",
    "health_status",
    "is_record_rejection",
    "parse_batch",
    "predict_items",
    "run_worker",
    "score_batch",
    "start_predict_items",
    "store_batch",
    "summarize_batch",
]

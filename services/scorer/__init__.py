"""The scorer: per-batch scoring (framework-free) and the database sink.

`score_batch` (= `parse_batch` + `predict_items`) turns a micro-batch of raw Kafka records
into scored items and dead letters (`start_predict_items` queues a slice's model passes and
returns a `PendingSlice` to finish later, so a worker can prepare the next slice meanwhile);
`dead_letter_record` is the DLQ record of a dead letter (its value bounded); `store_batch`
writes the scored items in one transaction, retrying connection errors with backoff.
The faust agent and a plain consumer loop both wrap these two calls.
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
from services.scorer.sink import RetryPolicy, backoff_delays, is_retryable, store_batch

__all__ = [
    "MAX_DEAD_LETTER_VALUE_BYTES",
    "BatchResult",
    "DeadLetter",
    "DeadLetterRecord",
    "PendingSlice",
    "PredictorLike",
    "RawRecord",
    "RetryPolicy",
    "backoff_delays",
    "ParsedBatch",
    "dead_letter_headers",
    "dead_letter_record",
    "header_only",
    "is_record_rejection",
    "is_retryable",
    "parse_batch",
    "predict_items",
    "score_batch",
    "start_predict_items",
    "store_batch",
]

"""Writing a scored batch: one transaction, retried with backoff while the database is away.

`store_batch` returns only after the transaction committed, so the caller may commit the
batch's Kafka offsets as soon as it returns; if it raises, nothing of the batch may be acked.
Retrying a batch is safe because `upsert_scored_batch` is idempotent and a failed attempt
is rolled back as a whole.

Connection-level errors (server down, restarting, network, SQLite busy) are retried;
anything else (a constraint or SQL error: a bug, not an outage) is raised at once
(`services.retry.is_retryable`). The backoff schedule is the pure generator
`services.retry.backoff_delays`, and the sink gives up on time (`RetryPolicy.max_elapsed`:
None holds the stream for as long as the outage lasts); sleeping, the clock and the jitter
source are injectable so tests never sleep.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from sqlalchemy.orm import Session

from services.retry import RetryPolicy, backoff_delays, is_retryable, retries_exhausted
from services.storage.repository import ScoredItem, UpsertCounts, upsert_scored_batch

log = logging.getLogger(__name__)


OnRetry = Callable[[int, float, BaseException], None]


class StoryStep(Protocol):
    """What storing needs of story clustering (`services.stories.StoryClustering`): `lock`
    before the batch's first write, `assign` after it, both in the batch's transaction."""

    def lock(self, session: Session) -> None: ...
    def assign(self, session: Session, items: Sequence[ScoredItem], *, all_new: bool = False) -> object: ...


def store_batch(
    session_factory: Callable[[], Session],
    scored: Sequence[ScoredItem],
    *,
    retry: RetryPolicy,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    on_retry: OnRetry | None = None,
    stories: StoryStep | None = None,
) -> UpsertCounts:
    """Upsert `scored` in one transaction and commit; return the rows newly inserted.

    Blocking (it sleeps between attempts): run it in a worker thread from an event loop.
    Raises the last error when it is not retryable or `retry` gives up (`retries_exhausted`).
    `on_retry(attempt, delay, error)` is called before each sleep (metrics, health).
    With `stories`, the items get their story in the same transaction (services.stories).
    """
    if not scored:
        return UpsertCounts(0, 0, 0)
    delays = backoff_delays(retry, rng or random.Random())
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            with session_factory() as session:
                if stories is not None:
                    stories.lock(session)
                counts = upsert_scored_batch(session, items=scored)
                if stories is not None:
                    # Every news row inserted just now: none of the items has a story yet.
                    all_new = counts.news_items == len({item.event_id for item in scored})
                    stories.assign(session, scored, all_new=all_new)
                session.commit()
            return counts
        except Exception as exc:
            if not is_retryable(exc):
                raise
            delay = next(delays)
            elapsed = clock() - start
            if retries_exhausted(retry, attempts=attempt, elapsed=elapsed + delay):
                log.error(
                    "storing a batch of %d items failed after %d attempts in %.1f s: %s",
                    len(scored),
                    attempt,
                    elapsed,
                    _summary(exc),
                )
                raise
            log.warning(
                "storing a batch of %d items failed (attempt %d, %.1f s so far), retrying in %.2f s: %s",
                len(scored),
                attempt,
                elapsed,
                delay,
                _summary(exc),
            )
            if on_retry is not None:
                on_retry(attempt, delay, exc)
            sleep(delay)


def _summary(exc: BaseException) -> str:
    """The error's class and first line (SQLAlchemy appends the statement and parameters)."""
    original = getattr(exc, "orig", None) or exc
    first = (str(original).strip().splitlines() or [""])[0][:300]
    return f"{type(original).__name__}: {first}"

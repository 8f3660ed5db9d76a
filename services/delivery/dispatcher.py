"""The dispatcher: fans alert notifications out to subscriptions and delivers them reliably.

One cycle (`run_once`): fan out undispatched outbox rows into deliveries, stamp digests
whose period has closed, then claim due sends in rounds and send each round through a
small thread pool (one slow receiver does not hold up the others). Each result is
recorded as soon as it arrives. The transactions and the crash and concurrency
guarantees are described in services.delivery.repository.

Time: scheduling (next attempt, digest periods) uses the wall clock, through `clock`, so
tests can move it; alert times stay event times inside the messages.

Deadlines, not timeouts: an HTTP send has one deadline for the whole request
(services.outbound), but a receiver that sends a byte now and then never trips a socket
timeout, and SMTP has only those. So a round has its own deadline, `round_deadline`: a
round is `4 x concurrency` sends, at most four back to back per worker thread, each
allowed two timeouts (e-mail's connect and data phases), plus some slack. A send still running when it
passes is recorded as a failed attempt ("no answer within the round's deadline"), to be
retried with backoff, and the pool is replaced so the stuck thread holds no one else up;
should that send still complete, the retry repeats it with the same idempotency key,
which receivers drop. The claim lease is the round deadline plus a margin for recording,
so a second dispatcher can never take over a delivery whose round is still going. After
a crash, the lease is how long a claimed delivery waits to be re-sent.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from services.delivery import repository as repo
from services.delivery.backoff import after_attempt
from services.delivery.channels import Channel, SendResult, build_channel
from services.delivery.channels.base import one_line
from services.delivery.metrics import DispatcherMetrics
from services.delivery.model import Subscription
from services.retry import RetryPolicy, backoff_delay
from services.settings import Settings

log = logging.getLogger(__name__)

ROUND_PER_WORKER = 4
LEASE_MARGIN_SECONDS = 30.0
ROUND_SLACK_SECONDS = 5.0  # beyond the sends' own worst case, for thread and connection overheads
MAX_FAN_OUT_ROUNDS = 100  # per cycle, so sending is never starved by a huge backlog
MAX_SEND_ROUNDS = 50  # per cycle, so a retry backlog never starves the fan-out of new alerts
DB_RETRY_MAX_SECONDS = 30.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class DispatcherConfig:
    policy: RetryPolicy  # of deliveries: it must count attempts (`max_attempts`)
    poll_seconds: float = 1.0
    batch_size: int = 100
    concurrency: int = 4
    timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.policy.max_attempts is None:
            raise ValueError("a delivery's retry policy needs max_attempts: it cannot stay pending for ever")

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatcherConfig:
        return cls(
            poll_seconds=settings.delivery.dispatcher_poll_seconds,
            batch_size=settings.delivery.dispatcher_batch_size,
            concurrency=settings.delivery.dispatcher_concurrency,
            timeout_seconds=settings.delivery.delivery_timeout_seconds,
            policy=RetryPolicy(
                max_attempts=settings.delivery.delivery_max_attempts,
                initial=settings.delivery.delivery_backoff_initial_seconds,
                max_delay=max(
                    settings.delivery.delivery_backoff_max_seconds,
                    settings.delivery.delivery_backoff_initial_seconds,
                ),
                jitter=0.5,  # each pause in the upper half of its step
            ),
        )

    @property
    def max_attempts(self) -> int:
        assert self.policy.max_attempts is not None  # checked in __post_init__
        return self.policy.max_attempts

    @property
    def round_size(self) -> int:
        return ROUND_PER_WORKER * self.concurrency

    @property
    def round_deadline(self) -> timedelta:
        """How long one round of sends may take before the unfinished ones are failed."""
        return timedelta(seconds=2 * ROUND_PER_WORKER * self.timeout_seconds + ROUND_SLACK_SECONDS)

    @property
    def lease(self) -> timedelta:
        return self.round_deadline + timedelta(seconds=LEASE_MARGIN_SECONDS)


@dataclass(frozen=True, slots=True)
class CycleStats:
    outbox_rows: int = 0
    created: int = 0
    digests: int = 0
    sends: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0

    @property
    def busy(self) -> bool:
        return bool(self.outbox_rows or self.sends)


ChannelFactory = Callable[[Subscription], Channel]


class Dispatcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        config: DispatcherConfig | None = None,
        metrics: DispatcherMetrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        channel_factory: ChannelFactory | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self.config = config or DispatcherConfig.from_settings(settings)
        self.metrics = metrics or DispatcherMetrics(stall_seconds=self._stall_seconds())
        self._clock = clock
        self._channel_factory = channel_factory or (lambda sub: build_channel(sub, settings))
        self._rng = rng or random.Random()
        self._pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="delivery")

    def _stall_seconds(self) -> float:
        # a cycle may legitimately spend a few rounds of timeouts sending
        return max(120.0, 10 * self.config.poll_seconds, 4 * self.config.lease.total_seconds())

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # ------------------------------------------------------------------ one cycle

    def run_once(self) -> CycleStats:
        """Fan out, form digests, send everything due; raises on a database error."""
        outbox_rows = created = 0
        for _ in range(MAX_FAN_OUT_ROUNDS):
            with self._sessions.begin() as session:
                fanned = repo.fan_out(session, now=self._clock(), limit=self.config.batch_size)
            outbox_rows += fanned.outbox_rows
            created += fanned.deliveries
            if fanned.outbox_rows < self.config.batch_size:
                break
        self.metrics.created(created)
        with self._sessions.begin() as session:
            digests = repo.form_digests(session, now=self._clock())
            interrupted = repo.give_up_interrupted(
                session, now=self._clock(), max_attempts=self.config.max_attempts
            )
        if interrupted:
            log.warning("gave up on deliveries: last attempt interrupted", extra={"count": interrupted})
        totals = {"sends": 0, "delivered": 0, "failed": 0, "dead": 0}
        for _ in range(MAX_SEND_ROUNDS):
            now = self._clock()
            with self._sessions.begin() as session:
                claims = repo.claim_due(
                    session, now=now, lease_until=now + self.config.lease, limit=self.config.round_size
                )
            for outcome in self._send_round(claims):
                totals["sends"] += 1
                totals[outcome] += 1
            if len(claims) < self.config.round_size:
                break
        with self._sessions() as session:
            self.metrics.cycle_done(repo.pending_count(session))
        return CycleStats(outbox_rows, created, digests, **totals)

    def _send_round(self, claims: list[repo.Claim]) -> list[str]:
        """Send and record every claim; by the round deadline, the unfinished ones are failed
        attempts (see the module docstring)."""
        started = self._clock()
        deadline = self.config.round_deadline.total_seconds()
        futures: dict[Future[tuple[SendResult, datetime, datetime, float]], repo.Claim] = {
            self._pool.submit(self._send, claim): claim for claim in claims
        }
        outcomes = []
        recorded: set[Future[tuple[SendResult, datetime, datetime, float]]] = set()
        try:
            for future in as_completed(futures, timeout=deadline):
                recorded.add(future)
                outcomes.append(self._record(futures[future], *future.result()))
        except FuturesTimeout:
            pass
        overran = False
        for future, claim in futures.items():
            if future in recorded:
                continue
            if future.done():  # finished just as the deadline passed
                outcomes.append(self._record(claim, *future.result()))
                continue
            overran |= not future.cancel()  # a queued send is simply not started
            late = SendResult("retry", None, f"no answer within the round's deadline of {deadline:g} s")
            outcomes.append(self._record(claim, late, started, self._clock(), deadline))
        if overran:
            log.warning("sends overran the round deadline; their threads are abandoned")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="delivery")
        return outcomes

    def _send(self, claim: repo.Claim) -> tuple[SendResult, datetime, datetime, float]:
        """Runs in a pool thread; never raises (a failing channel is a failed attempt)."""
        started = self._clock()
        t0 = time.perf_counter()
        try:
            result = self._channel_factory(claim.subscription).send(claim.message)
        except Exception as exc:  # a bug in a channel must not lose the attempt's record
            log.exception("channel raised", extra={"subscription": claim.subscription.name})
            result = SendResult("retry", None, one_line(f"{type(exc).__name__}: {exc}"))
        return result, started, self._clock(), time.perf_counter() - t0

    def _record(
        self, claim: repo.Claim, result: SendResult, started: datetime, finished: datetime, seconds: float
    ) -> str:
        transition = after_attempt(
            verdict=result.verdict,
            attempts=claim.attempt,
            now=finished,
            policy=self.config.policy,
            retry_after=result.retry_after,
            rng=self._rng,
        )
        with self._sessions.begin() as session:
            repo.record_attempt(
                session,
                claim=claim,
                started_at=started,
                finished_at=finished,
                result=result,
                transition=transition,
            )
        outcome = {"delivered": "delivered", "dead": "dead"}.get(transition.status, "failed")
        channel = claim.subscription.channel
        self.metrics.attempt(channel, outcome, seconds, deliveries=len(claim.delivery_ids))
        fields = {
            "subscription": claim.subscription.name,
            "channel": channel,
            "idempotency_key": claim.message.idempotency_key,
            "attempt": claim.attempt,
            "deliveries": len(claim.delivery_ids),
            "outcome": outcome,
            "status_code": result.status_code,
            "error": result.error,
            "next_attempt_at": transition.next_attempt_at.isoformat() if transition.next_attempt_at else None,
        }
        level = logging.INFO if outcome == "delivered" else logging.WARNING
        log.log(level, "delivery %s", outcome, extra=fields)
        return outcome

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """Cycle until `stop` is set; a database outage is retried with backoff, never fatal.

        The pause doubles from twice the poll interval up to DB_RETRY_MAX_SECONDS (the shared
        `services.retry` schedule, without jitter: the pauses stay predictable in the logs).
        Every database error (`DBAPIError`) is retried here, not only the `is_retryable`
        ones: each transaction of a cycle rolls back on its own, so the next cycle cannot
        find half a change, and a dispatcher that ended would stop every delivery."""
        outage = RetryPolicy(
            initial=min(DB_RETRY_MAX_SECONDS, 2 * self.config.poll_seconds),
            max_delay=DB_RETRY_MAX_SECONDS,
            jitter=0.0,
        )
        failures = 0
        while not stop.is_set():
            try:
                stats = self.run_once()
            except DBAPIError as exc:
                failures += 1
                self.metrics.database_error()
                delay = backoff_delay(outage, failures)
                log.warning(
                    "database error, retrying",
                    extra={"error": one_line(exc.orig if exc.orig is not None else exc), "retry_in": delay},
                )
                stop.wait(delay)
                continue
            failures = 0
            if not stats.busy:
                stop.wait(self.config.poll_seconds)

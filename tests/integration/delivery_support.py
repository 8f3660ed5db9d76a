"""Helpers of the delivery tests: alert + outbox rows written directly (the alerter's side),
a real local webhook receiver and a real local SMTP server (aiosmtpd).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from services.storage import AlertOutboxRow, AlertRow, make_engine, session_factory, upgrade_database

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def insert_notification(
    session: Session,
    *,
    scope: str,
    key: str,
    severity: str = "high",
    kind: str = "open",
    at: datetime = T0,
    rule: str = "bearish_spike",
    headlines: Sequence[str] = ("Oil majors slump as crude plunges",),
) -> str:
    """An `alerts` row (if new) and one `alert_outbox` row, as the alerter writes them;
    returns the outbox row's dedupe key. Writing the same notification twice adds nothing."""
    window_start = at - timedelta(minutes=10)
    alert_key = f"{rule}|{scope}|{key}|{window_start.isoformat()}"
    evidence = {
        "rule": rule,
        "scope": scope,
        "key": key,
        "window_start": window_start.isoformat(),
        "window_end": at.isoformat(),
        "total": 40,
        "bearish": 25,
        "share": 25 / 40,
        "baseline_share": 0.15,
        "expected_bearish": 6.0,
        "z_score": 8.1,
        "p_value": 3.2e-9,
        "severity": severity,
        "event_ids": [f"ev-{i}" for i in range(len(headlines))],
    }
    insert = _insert(session)
    session.execute(
        insert(AlertRow)
        .values(
            alert_key=alert_key,
            rule=rule,
            scope=scope,
            key=key,
            window_start=window_start,
            opened_at=at,
            last_detected_at=at,
            severity=severity,
            notified_severity=severity,
            last_notified_at=at,
            detections=1,
            status="resolved" if kind == "resolve" else "open",
            resolved_at=at if kind == "resolve" else None,
            evidence=evidence,
            event_ids=evidence["event_ids"],
            created_at=at,
            updated_at=at,
        )
        .on_conflict_do_nothing(index_elements=["alert_key"])
    )
    dedupe_key = f"{alert_key}|{kind}|{at.isoformat()}"
    payload = {  # the alerter's message, services.alerting.message (version 1)
        "version": 1,
        "dedupe_key": dedupe_key,
        "alert_key": alert_key,
        "kind": kind,
        "rule": rule,
        "scope": scope,
        "key": key,
        "severity": severity,
        "status": "resolved" if kind == "resolve" else "open",
        "at": at.isoformat(),
        "window": {"start": evidence["window_start"], "end": evidence["window_end"]},
        "counts": {"total": evidence["total"], "bearish": evidence["bearish"], "share": evidence["share"]},
        "baseline": {"share": evidence["baseline_share"], "items": 500.0, "expected_bearish": 6.0},
        "p_value": evidence["p_value"],
        "z_score": evidence["z_score"],
        "event_ids": evidence["event_ids"],
        "headlines": [{"event_id": f"ev-{i}", "headline": h, "url": None} for i, h in enumerate(headlines)],
    }
    session.execute(
        insert(AlertOutboxRow)
        .values(
            dedupe_key=dedupe_key,
            alert_key=alert_key,
            kind=kind,
            severity=severity,
            scope=scope,
            key=key,
            at=at,
            payload=payload,
            created_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    return dedupe_key


def clear_delivery_tables(session: Session) -> None:
    """Empty the alerting tables between tests sharing a module database (PostgreSQL)."""
    session.execute(
        text("TRUNCATE subscriptions, alerts, alert_outbox, deliveries, delivery_attempts CASCADE")
    )


@pytest.fixture(scope="module", name="engine")
def module_engine(postgres_url: str) -> Iterator[Engine]:
    """The `engine` of a delivery test module: migrated once, shared by its tests, each of
    which starts from emptied tables (`emptied_sessions`). Import it into the module."""
    upgrade_database(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def emptied_sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory on `engine`, the delivery tables emptied first."""
    factory = session_factory(engine)
    with factory.begin() as session:
        clear_delivery_tables(session)
    return factory


# --------------------------------------------------------------------------- webhook receiver


@contextmanager
def local_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """An HTTP server on a free port of 127.0.0.1, served from a daemon thread until the
    block ends; yields its port. The receivers of the webhook tests and the chaos run."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def signed_with(self, secret: str) -> bool:
        """What a webhook receiver checks: signature over timestamp and body, timestamp fresh."""
        from services.delivery.render import verify

        return verify(
            self.body,
            secret,
            self.headers.get("X-Finsent-Signature", ""),
            timestamp=self.headers.get("X-Finsent-Timestamp", ""),
            now=time.time(),
        )


@dataclass
class WebhookReceiver:
    """A real HTTP server on 127.0.0.1: answers each POST with the next status of `statuses`
    (then `default`), after `delay` seconds, and keeps every request."""

    statuses: list[int] = field(default_factory=list)
    default: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    requests: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _next_status(self, request: Received) -> int:
        with self._lock:
            self.requests.append(request)
            return self.statuses.pop(0) if self.statuses else self.default

    @contextmanager
    def serve(self) -> Iterator[WebhookReceiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = receiver._next_status(Received(self.path, dict(self.headers.items()), body))
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                body = b"" if status in (204, 304) else receiver.body  # HTTP: these have no body
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        with local_http_server(Handler) as port:
            self.port = port
            yield self

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@dataclass
class DripServer:
    """A real TCP server on 127.0.0.1 that reads what it is sent, then answers `response` one
    byte every `interval` seconds, for at most `limit` seconds: a receiver that never trips a
    socket-read timeout. `silent` answers nothing at all (a port that accepts and hangs)."""

    response: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000
    interval: float = 0.2
    limit: float = 20.0
    silent: bool = False
    speaks_first: bool = False  # SMTP: the server greets before the client says anything
    connections: int = 0

    @contextmanager
    def serve(self) -> Iterator[DripServer]:
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        stop = threading.Event()

        def drip(conn: socket.socket) -> None:
            with conn:
                conn.settimeout(1.0)
                try:
                    if not self.speaks_first:
                        conn.recv(65536)
                    started = time.monotonic()
                    for byte in self.response:
                        if stop.is_set() or time.monotonic() - started > self.limit:
                            return
                        if not self.silent:
                            conn.sendall(bytes([byte]))
                        time.sleep(self.interval)
                except OSError:  # the client gave up: what the test wants
                    return

        def accept() -> None:
            listener.settimeout(0.05)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                self.connections += 1
                threading.Thread(target=drip, args=(conn,), daemon=True).start()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(5)
            listener.close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


# --------------------------------------------------------------------------- SMTP server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SmtpSink:
    """aiosmtpd handler: answers DATA with the next of `replies` (then 250) and keeps what
    it accepted, parsed."""

    replies: list[str] = field(default_factory=list)
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    attempts: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.replies:
            return self.replies.pop(0)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server(sink: SmtpSink) -> Iterator[int]:
    """A real SMTP server on 127.0.0.1 (no TLS, no auth); yields its port."""
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def wait_until(condition: Callable[[], bool], *, timeout: float = 15.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(step)

"""E-mail over SMTP (smtplib): a plain-text message per notification or digest.

The Message-ID is derived from the delivery's idempotency key, so a re-send after a crash
carries the same Message-ID and mail clients and archives that deduplicate by it show one
message. The password comes from the subscription's secret reference, else from
FINSENT_SMTP_PASSWORD_FILE; it is never stored in the database.

smtplib has only per-read timeouts, which a server answering a byte at a time never trips;
a watchdog shuts the socket down when the whole exchange has taken longer than two
timeouts (its connect and data phases), so a send always ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from services.delivery import render
from services.delivery.backoff import classify_smtp_code
from services.delivery.channels.base import SendResult, one_line
from services.delivery.model import Message
from services.delivery.secrets import SecretError, resolve_secret


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str | None
    port: int = 587
    user: str | None = None
    password_file: Path | None = None
    sender: str = "finsent@localhost"
    starttls: bool = True
    timeout: float = 10.0


def _abort(smtp: smtplib.SMTP, expired: threading.Event) -> None:
    """Unblock whatever read the exchange is waiting in (the watchdog's action)."""
    expired.set()
    sock = getattr(smtp, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def message_id(idempotency_key: str, sender: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]
    domain = sender.rpartition("@")[2] or "finsent.invalid"
    return f"<{digest}.finsent@{domain}>"


def build_email(message: Message, *, sender: str, recipient: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = recipient
    mail["Subject"] = render.plain(render.message_title(message), 200)
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = message_id(message.idempotency_key, sender)
    mail["X-Finsent-Idempotency-Key"] = render.plain(message.idempotency_key, 400)
    mail.set_content(render.text_body(message), subtype="plain", charset="utf-8")
    return mail


class EmailChannel:
    name = "email"

    def __init__(self, recipient: str, config: SmtpConfig, secret_ref: str | None = None) -> None:
        self.recipient = recipient
        self.config = config
        self.secret_ref = secret_ref

    def describe(self) -> str:
        return f"email {self.recipient} via {self.config.host}:{self.config.port}"

    def _password(self) -> str | None:
        if self.secret_ref is not None:
            return resolve_secret(self.secret_ref)
        if self.config.password_file is not None:
            return resolve_secret(f"file:{self.config.password_file.resolve()}")
        return None

    def send(self, message: Message) -> SendResult:
        cfg = self.config
        if not cfg.host:
            return SendResult("retry", None, "no SMTP server configured: set FINSENT_SMTP_HOST")
        try:
            password = self._password() if cfg.user else None
        except SecretError as exc:
            return SendResult("retry", None, str(exc))
        mail = build_email(message, sender=cfg.sender, recipient=self.recipient)
        deadline = 2 * cfg.timeout
        smtp = smtplib.SMTP(timeout=cfg.timeout)
        expired = threading.Event()
        watchdog = threading.Timer(deadline, _abort, args=(smtp, expired))
        watchdog.daemon = True
        watchdog.start()
        try:
            with smtp:
                smtp.connect(cfg.host, cfg.port)
                if cfg.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.user and password is not None:
                    smtp.login(cfg.user, password)
                refused = smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            code = max(codes) if codes else 550
            return SendResult(
                classify_smtp_code(code), code, one_line(f"recipient refused: {exc.recipients}")
            )
        except smtplib.SMTPResponseException as exc:  # includes auth, sender and data refusals
            detail = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else exc.smtp_error
            )
            return SendResult(
                classify_smtp_code(exc.smtp_code), exc.smtp_code, one_line(f"SMTP {exc.smtp_code} {detail}")
            )
        except TimeoutError:
            return SendResult("retry", None, f"SMTP timed out after {cfg.timeout:g} s")
        except (smtplib.SMTPException, OSError) as exc:  # connection refused/dropped, TLS failure
            if expired.is_set():
                return SendResult("retry", None, f"SMTP exchange not finished within {deadline:g} s")
            return SendResult("retry", None, one_line(f"SMTP {type(exc).__name__}: {exc}"))
        finally:
            watchdog.cancel()
        if refused:  # only possible with several recipients; kept for completeness
            return SendResult("retry", None, one_line(f"recipients refused: {refused}"))
        return SendResult("delivered", 250)

"""What a notification looks like on each channel, and the keys that make it idempotent.

Pure functions, no I/O. News text comes from outside and is shown as plain text
everywhere: control characters and line breaks are flattened (`plain`), nothing is ever
rendered as HTML, and Slack gets its three mandatory entity escapes so a headline cannot
inject a link or an @channel.

Payload contract: the outbox row's columns (kind, severity, scope, key, at, alert key) are
authoritative. From `payload` (the alerter's message, services.alerting.message, version 1)
the renderers read `summary` (the one-line account, used as the title when present),
`window.start/end`, `counts.total/bearish`, `baseline.share`, `p_value`
and `headlines` (objects with `headline`, or strings); a flat `Detection.to_dict()` shape
(`window_start`, `total`, `baseline_share`, …, possibly under `evidence`) is read too.
Missing fields are left out of the text; the webhook sends the payload unchanged. A
withdrawal (kind `withdrawn`: a notified alert the alerter superseded after judging its
windows again with late stories) renders as "withdrawn: <the alert's summary>", with its
`reason` in the e-mail body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from services.delivery.model import Message, Notification

MAX_KEY_CHARS: Final = 400  # deliveries.idempotency_key / digest_key
MAX_HEADLINES: Final = 5  # per notification in human-readable text
MAX_DIGEST_LINES: Final = 50
SIGNATURE_HEADER: Final = "X-Finsent-Signature"
TIMESTAMP_HEADER: Final = "X-Finsent-Timestamp"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
SIGNATURE_TOLERANCE_S: Final = 300  # a receiver refuses a signed request older (or newer) than this

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_KIND_TEXT: Final = {
    "open": "bearish news spike",
    "escalate": "bearish news spike escalated",
    "renotify": "bearish news spike continues",
    "reopen": "bearish news spike back",
    "resolve": "resolved: bearish news spike over",
    "withdrawn": "withdrawn: bearish news spike",
    "test": "test notification",
}


# ------------------------------------------------------------------ identity


def delivery_key(dedupe_key: str, subscription_id: int) -> str:
    """Idempotency key of one notification to one subscription: stable across replays,
    restarts and retries. Hashed when the readable form would not fit the column."""
    readable = f"{dedupe_key}|{subscription_id}"
    if len(readable) <= MAX_KEY_CHARS:
        return readable
    return "sha256:" + hashlib.sha256(readable.encode("utf-8")).hexdigest()


def digest_key(subscription_id: int, member_keys: Sequence[str]) -> str:
    """Idempotency key of a digest: a hash of its members, so re-sending the same digest after
    a crash carries the same key, and any other set of alerts a different one."""
    body = "\n".join(sorted(member_keys)).encode("utf-8")
    return f"digest|{subscription_id}|sha256:{hashlib.sha256(body).hexdigest()}"


def sign(body: bytes, secret: str, *, timestamp: str) -> str:
    """The `X-Finsent-Signature` value: `sha256=` + hex HMAC-SHA256 of `<timestamp>.<raw body>`,
    `timestamp` being the `X-Finsent-Timestamp` header (unix seconds of the attempt).

    The timestamp is signed so that a captured request cannot be sent again later: a new
    timestamp breaks the signature, the old one is refused once it is older than the
    receiver's tolerance (`verify`). Retries of a delivery carry a fresh timestamp and so a
    fresh signature; the body and the Idempotency-Key stay the same."""
    signed = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def verify(
    body: bytes,
    secret: str,
    signature: str,
    *,
    timestamp: str,
    now: float,
    tolerance_seconds: float = SIGNATURE_TOLERANCE_S,
) -> bool:
    """What a receiver does: the timestamp is within `tolerance_seconds` of its clock (`now`,
    unix seconds) and the signature matches (constant-time); here for tests and the README."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(body, secret, timestamp=timestamp), signature)


def make_test_message(subscription: str, *, now: datetime, nonce: str) -> Message:
    """What `finsent subscriptions test` sends: clearly marked, with a fresh idempotency key
    (`nonce`) so a receiver never drops it as a repeat of an earlier test."""
    note = "Test notification from `finsent subscriptions test`; not an alert."
    notification = Notification(
        outbox_id=0,
        dedupe_key=f"test|{subscription}|{nonce}",
        alert_key="test",
        kind="test",
        severity="warning",
        scope="market",
        key="*",
        at=now,
        payload={"test": True, "note": note},
    )
    return Message(f"test|{subscription}|{nonce}", subscription, (notification,), test=True)


# ------------------------------------------------------------------ text


def plain(text: object, limit: int = 300) -> str:
    """One line of plain text: control characters and line breaks become spaces."""
    flat = " ".join(_CONTROL.sub(" ", str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Facts:
    """The numbers a human-readable notification quotes, wherever the payload keeps them."""

    total: int | None = None
    bearish: int | None = None
    baseline_share: float | None = None
    p_value: float | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None


def facts(payload: Mapping[str, Any]) -> Facts:
    flat = payload
    for name in ("evidence", "detection"):
        if isinstance(payload.get(name), Mapping):
            flat = payload[name]
    counts, baseline, window = (_mapping(payload.get(k)) for k in ("counts", "baseline", "window"))
    return Facts(
        total=_int(counts.get("total"), flat.get("total")),
        bearish=_int(counts.get("bearish"), flat.get("bearish")),
        baseline_share=_float(baseline.get("share"), flat.get("baseline_share")),
        p_value=_float(payload.get("p_value"), flat.get("p_value")),
        window_start=_time(window.get("start"), flat.get("window_start")),
        window_end=_time(window.get("end"), flat.get("window_end")),
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(*values: object) -> int | None:
    return next((v for v in values if isinstance(v, int) and not isinstance(v, bool)), None)


def _float(*values: object) -> float | None:
    for v in values:
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def _time(*values: object) -> datetime | None:
    for v in values:
        if isinstance(v, str):
            try:
                parsed = datetime.fromisoformat(v)
            except ValueError:
                continue
            if parsed.tzinfo is not None:
                return parsed
    return None


def headlines(payload: Mapping[str, Any]) -> list[str]:
    items = payload.get("headlines")
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        return []
    out = []
    for item in items:
        text = item.get("headline") if isinstance(item, Mapping) else item
        if text:
            out.append(plain(text, 200))
    return out


def scope_text(scope: str, key: str) -> str:
    if scope == "market":
        return "the whole market"
    if scope == "ticker":
        return f"ticker {plain(key, 20)}"
    return f"topic {plain(key, 64)}"


_KIND_PREFIX: Final = {
    "escalate": "escalated: ",
    "renotify": "continues: ",
    "reopen": "back: ",
    "resolve": "",
    "withdrawn": "withdrawn: ",
}


def summary(n: Notification) -> str:
    """One line: severity, what happened, where, and the numbers behind it. The alerter's
    own line (`summary` in the payload: "Energy / Oil: 22 bearish stories in 10 min,
    usually ~1") when it has one; otherwise built from the counts."""
    said = n.payload.get("summary")
    if isinstance(said, str) and said.strip():
        return f"[{plain(n.severity, 16).upper()}] {_KIND_PREFIX.get(n.kind, '')}{plain(said, 240)}"
    what = _KIND_TEXT.get(n.kind, plain(n.kind, 20))
    line = f"[{plain(n.severity, 16).upper()}] {what} on {scope_text(n.scope, n.key)}"
    if n.kind in ("resolve", "withdrawn"):
        return line
    f = facts(n.payload)
    quoted = []
    if f.total is not None and f.bearish is not None:
        quoted.append(f"{f.bearish}/{f.total} bearish{_window_text(f)}")
    if f.baseline_share is not None:
        quoted.append(f"baseline {f.baseline_share:.0%}")
    if f.p_value is not None:
        quoted.append(f"p={f.p_value:.1e}")
    return f"{line} ({', '.join(quoted)})" if quoted else line


def _window_text(f: Facts) -> str:
    if f.window_start is None or f.window_end is None or f.window_end <= f.window_start:
        return ""
    minutes = round((f.window_end - f.window_start).total_seconds() / 60)
    return f" in {minutes} min to {f.window_end.astimezone(UTC):%H:%M} UTC"


def message_title(message: Message) -> str:
    """E-mail subject / first line of a chat message."""
    prefix = "[finsent TEST]" if message.test else "[finsent]"
    if message.digest:
        return f"{prefix} digest for {plain(message.subscription, 100)}: {_count(message)}"
    return f"{prefix} {summary(message.notifications[0])}"


def _count(message: Message) -> str:
    n = len(message.notifications)
    return f"{n} alert notification{'s' if n != 1 else ''}"


def text_body(message: Message) -> str:
    """The plain-text body of an e-mail: every notification with its evidence and headlines."""
    lines = [message_title(message), ""]
    if message.test:
        lines += ["This is a test notification sent by `finsent subscriptions test`; it is not an alert.", ""]
    shown = message.notifications[:MAX_DIGEST_LINES]
    for n in shown:
        if message.digest:
            lines.append(f"* {summary(n)}")
        f = facts(n.payload)
        lines.append(f"  event time: {n.at.isoformat()}")
        if f.window_start is not None and f.window_end is not None:
            lines.append(f"  window: {f.window_start.isoformat()} to {f.window_end.isoformat()}")
        lines.append(f"  alert: {plain(n.alert_key, 300)}")
        if n.kind == "withdrawn" and n.payload.get("reason"):
            lines.append(f"  why: {plain(n.payload['reason'], 300)}")
        lines += [f"  - {h}" for h in headlines(n.payload)[:MAX_HEADLINES]]
        lines.append("")
    if len(message.notifications) > len(shown):
        lines += [f"… and {len(message.notifications) - len(shown)} more", ""]
    lines += [
        f"Subscription: {plain(message.subscription, 100)}",
        f"Idempotency key: {plain(message.idempotency_key, 400)}",
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ channel bodies


def webhook_body(message: Message) -> bytes:
    """The JSON a webhook receives; the same bytes on every retry of a delivery (sorted keys,
    no send time inside), so its signature is the same too."""
    doc = {
        "type": "test" if message.test else "digest" if message.digest else "alert",
        "idempotency_key": message.idempotency_key,
        "subscription": message.subscription,
        "test": message.test,
        "count": len(message.notifications),
        "notifications": [
            {
                "dedupe_key": n.dedupe_key,
                "alert_key": n.alert_key,
                "kind": n.kind,
                "severity": n.severity,
                "scope": n.scope,
                "key": n.key,
                "at": n.at.isoformat(),
                "summary": summary(n),
                "payload": dict(n.payload),
            }
            for n in message.notifications
        ],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def slack_escape(text: str) -> str:
    """Slack's mandatory escapes; text stays plain (no links, no mentions from news text)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(message: Message) -> bytes:
    """`{"text": …}` for a Slack-compatible incoming webhook: a title line, then one line per
    notification (digest) or per headline."""
    lines = [message_title(message)]
    if message.digest:
        shown = message.notifications[:MAX_DIGEST_LINES]
        lines += [f"• {summary(n)}" for n in shown]
        if len(message.notifications) > len(shown):
            lines.append(f"… and {len(message.notifications) - len(shown)} more")
    else:
        lines += [f"• {h}" for h in headlines(message.notifications[0].payload)[:MAX_HEADLINES]]
    doc = {"text": slack_escape("\n".join(lines)), "mrkdwn": False}
    return json.dumps(doc, ensure_ascii=False).encode()


def log_fields(message: Message) -> dict[str, Any]:
    """Fields of the structured log line of the log channel."""
    return {
        "idempotency_key": message.idempotency_key,
        "subscription": message.subscription,
        "test": message.test,
        "digest": message.digest,
        "notifications": [
            {
                "alert_key": n.alert_key,
                "kind": n.kind,
                "severity": n.severity,
                "scope": n.scope,
                "key": n.key,
                "at": n.at.isoformat(),
                "summary": summary(n),
            }
            for n in message.notifications
        ],
    }

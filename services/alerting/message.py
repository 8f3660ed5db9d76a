"""The alert message: what goes to the `alerts` topic, into `alert_outbox.payload`, and to
subscribers. Pure: built from a lifecycle `Action`, its evidence and the headlines.

One message per notifying action, identified by the action's `dedupe_key` (also the Kafka
key and the delivery idempotency key), so a receiver can drop a repeat. Everything a
desk needs to judge the alert without opening the dashboard is in it: scope and key,
the event-time window, counts against the baseline, the test statistic, and the
headlines that drove it as plain text (no HTML entities or control characters, so that
each channel can escape it for its own format). `summary` says in one line what happened
("Energy / Oil: 22 bearish stories in 10 min, usually ~1"); `tests` names the test(s) that
fired, `surge` and `p_share` / `p_surge` carry the count test's evidence.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from services.alerting.lifecycle import Action

MESSAGE_VERSION: Final = 1
MAX_HEADLINE_CHARS: Final = 300
TOP_HEADLINES: Final = 10

_CONTROL = re.compile(r"[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Story:
    """A headline cited by an alert (from `news_items`)."""

    headline: str
    url: str | None = None
    published_at: datetime | None = None


def plain_text(text: str, *, limit: int = MAX_HEADLINE_CHARS) -> str:
    """One line of plain text: entities unescaped (feeds double-escape `&amp;amp;`), control
    and zero-width characters dropped, whitespace collapsed, cut at `limit` characters."""
    text = html.unescape(html.unescape(text))
    text = _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def alert_message(
    action: Action,
    *,
    evidence: Mapping[str, Any],
    stories: Mapping[str, Story],
    created_at: datetime,
    top: int = TOP_HEADLINES,
) -> dict[str, Any]:
    """The JSON-ready message announcing `action`.

    `evidence` is the detection behind it (`Detection.to_dict()`): the action's own for
    open / escalate / renotify, the alert's latest for a resolution, which has none of its
    own. `stories` maps event ids to their headlines; the first `top` of the evidence's
    bearish stories (in event-time order: the ones that started the spike) are quoted,
    those whose text is known (`message_event_ids` says which to look up).
    `created_at` is when the alerter wrote it (wall clock); every other time is event time.
    """
    alert = action.alert
    event_ids = [str(e) for e in evidence.get("event_ids", ())]
    headlines: list[dict[str, Any]] = []
    for event_id in event_ids[:top]:
        story = stories.get(event_id)
        if story is None:
            continue
        headlines.append(
            {
                "event_id": event_id,
                "headline": plain_text(story.headline),
                "url": story.url,
                "published_at": _iso(story.published_at),
            }
        )
    return {
        "version": MESSAGE_VERSION,
        "summary": what_happened(alert.scope, alert.key, evidence, resolved=action.kind == "resolve"),
        "dedupe_key": action.dedupe_key,
        "alert_key": alert.alert_key,
        "kind": action.kind,
        "rule": alert.rule,
        "scope": alert.scope,
        "key": alert.key,
        "severity": alert.severity,
        "status": alert.status,
        "at": _iso(action.at),
        "opened_at": _iso(alert.opened_at),
        "resolved_at": _iso(alert.resolved_at),
        "window": {"start": evidence.get("window_start"), "end": evidence.get("window_end")},
        "counts": {
            "total": evidence.get("total"),
            "bearish": evidence.get("bearish"),
            "share": evidence.get("share"),
        },
        "baseline": {
            "share": evidence.get("baseline_share"),
            "items": evidence.get("baseline_items"),
            "expected_bearish": evidence.get("expected_bearish"),
        },
        "p_value": evidence.get("p_value"),
        "tests": list(evidence.get("tests", ("share",))),
        "surge": {
            "usual_bearish": evidence.get("usual_bearish"),
            "rate_ratio": _finite(evidence.get("rate_ratio")),
            "minutes": evidence.get("surge_minutes"),
        },
        "p_share": evidence.get("p_share", evidence.get("p_value")),
        "p_surge": evidence.get("p_surge"),
        "z_score": _finite(evidence.get("z_score")),
        "detection_severity": evidence.get("severity"),
        "event_ids": event_ids,
        "headlines": headlines,
        "created_at": _iso(created_at),
    }


WITHDRAWN: Final = "withdrawn"  # the outbox kind of a withdrawal
WITHDRAWN_REASON: Final = (
    "superseded: judged again with stories that arrived late, the complete history does not raise it"
)


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A notified alert that a late story's re-run superseded (its stored row)."""

    alert_key: str
    rule: str
    scope: str
    key: str
    severity: str
    opened_at: datetime
    resolved_at: datetime | None
    evidence: Mapping[str, Any]

    @property
    def dedupe_key(self) -> str:
        """One withdrawal per alert, identical on every replay."""
        return f"{self.alert_key}|{WITHDRAWN}"


def withdrawal_message(
    withdrawal: Withdrawal, *, at: datetime, created_at: datetime, reason: str = WITHDRAWN_REASON
) -> dict[str, Any]:
    """The JSON-ready message withdrawing an alert that was notified and then superseded.

    Superseding is recorded in the database, but a subscriber only knows what it was sent:
    without this message the alarm it got stands. Same version and fields as
    `alert_message` where they apply (its `summary` is the alert's own line, so the
    dispatcher renders "withdrawn: <summary>"), plus `reason`. `at` is the event-time
    boundary of the step that superseded it; `created_at` the wall clock."""
    evidence = withdrawal.evidence
    return {
        "version": MESSAGE_VERSION,
        "summary": what_happened(withdrawal.scope, withdrawal.key, evidence),
        "dedupe_key": withdrawal.dedupe_key,
        "alert_key": withdrawal.alert_key,
        "kind": WITHDRAWN,
        "rule": withdrawal.rule,
        "scope": withdrawal.scope,
        "key": withdrawal.key,
        "severity": withdrawal.severity,
        "status": "superseded",
        "reason": reason,
        "at": _iso(at),
        "opened_at": _iso(withdrawal.opened_at),
        "resolved_at": _iso(withdrawal.resolved_at),
        "window": {"start": evidence.get("window_start"), "end": evidence.get("window_end")},
        "event_ids": [str(e) for e in evidence.get("event_ids", ())],
        "headlines": [],
        "created_at": _iso(created_at),
    }


def scope_name(scope: str, key: str) -> str:
    """How a desk names a scope: the topic, `$TICKER`, or the whole market."""
    if scope == "market":
        return "Whole market"
    return f"${plain_text(key, limit=20)}" if scope == "ticker" else plain_text(key, limit=64)


def _usually(count: float) -> str:
    if count < 0.05:
        return "usually none"
    return f"usually ~{count:.1f}" if count < 0.95 else f"usually ~{math.floor(count + 0.5)}"


def what_happened(scope: str, key: str, evidence: Mapping[str, Any], *, resolved: bool = False) -> str:
    """One line saying what happened, for a human: "Energy / Oil: 22 bearish stories in
    10 min, usually ~1" (the surge test fired), or "… 9 of 12 stories bearish in 10 min,
    usually 20 %" (only the share test did). Empty evidence gives the scope alone."""
    name = scope_name(scope, key)
    bearish, total = evidence.get("bearish"), evidence.get("total")
    if not isinstance(bearish, int) or isinstance(bearish, bool):
        return f"{name}: back to normal" if resolved else f"{name}: bearish news spike"
    minutes = _window_minutes(evidence)
    span = f" in {minutes} min" if minutes else ""
    tests = evidence.get("tests") or ["share"]
    usual = evidence.get("usual_bearish")
    share = evidence.get("baseline_share")
    if isinstance(usual, int | float) and ("surge" in tests or not isinstance(share, int | float)):
        line = f"{bearish} bearish stories{span}, {_usually(float(usual))}"
    elif isinstance(total, int) and isinstance(share, int | float):
        line = f"{bearish} of {total} stories bearish{span}, usually {share:.0%}"
    else:
        line = f"{bearish} bearish stories{span}"
    return f"{name}: back to normal after {line}" if resolved else f"{name}: {line}"


def _window_minutes(evidence: Mapping[str, Any]) -> int | None:
    try:
        start = datetime.fromisoformat(str(evidence["window_start"]))
        end = datetime.fromisoformat(str(evidence["window_end"]))
    except (KeyError, ValueError):
        return None
    minutes = round((end - start).total_seconds() / 60)
    return minutes if minutes > 0 else None


def _finite(value: Any) -> Any:
    # JSON has no infinity or NaN (PostgreSQL's JSON type refuses them): such a statistic
    # becomes null rather than making the whole message unstorable.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_safe_evidence(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """`Detection.to_dict()` with non-finite floats as None: storable as JSON anywhere."""
    return {k: _finite(v) for k, v in evidence.items()}


def message_event_ids(evidence: Mapping[str, Any], *, top: int = TOP_HEADLINES) -> Sequence[str]:
    """The event ids whose headlines `alert_message` quotes (what to look up)."""
    return [str(e) for e in evidence.get("event_ids", ())][:top]

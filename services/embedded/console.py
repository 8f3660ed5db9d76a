"""What `finsent run` prints of the live streams: a line per scored item and per alert.

News, tickers and ids come from outside; every field is passed through `printable` first,
so an escape sequence in a headline cannot clear or recolour the operator's terminal.
"""

from __future__ import annotations

import math
import shutil
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any


def say(line: str) -> None:
    """One line on stdout, at once (the supervisor's output is read as it comes)."""
    print(line, flush=True)


def warn(line: str) -> None:
    """One line on stderr, at once."""
    print(line, file=sys.stderr, flush=True)


def printable(value: object) -> str:
    """`value` as text safe to print on a terminal: every character that is not printable
    (control characters, escape sequences, bidirectional overrides, line separators) is
    shown as its Python escape. News and ids come from outside; printed raw, an escape
    sequence could clear or recolour the operator's terminal or hide what follows it."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def score_text(value: object) -> str:
    """A sentiment score as `+0.80`, or `?` for anything that is not a finite number: the tail
    prints what the topic carries, and a malformed field must not end it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "?"
    return f"{value:+.2f}"


class StreamPrinter:
    """Prints each scored item as one line; counts what it saw (thread-safe)."""

    def __init__(self, headlines: dict[str, str], *, quiet: bool) -> None:
        self._headlines = headlines
        self._quiet = quiet
        self._lock = threading.Lock()
        self.seen: set[str] = set()
        self.labels: dict[str, str] = {}  # event id -> sentiment
        self.first_at: float | None = None
        self._width = max(60, shutil.get_terminal_size((120, 20)).columns)

    def __call__(self, item: dict[str, Any]) -> None:
        event_id = str(item.get("event_id", "?"))
        with self._lock:
            if self.first_at is None:
                self.first_at = time.monotonic()
            new = event_id not in self.seen
            self.seen.add(event_id)
            self.labels[event_id] = str(item.get("sentiment", "?"))
        if self._quiet or not new:
            return
        listed = item.get("tickers")
        tickers = ",".join(printable(t) for t in listed) if isinstance(listed, list) else ""
        text = printable(self._headlines.get(event_id, event_id))
        topic = printable(item.get("topic", "?"))
        line = (
            f"{printable(item.get('sentiment', '?')):<7} {score_text(item.get('sentiment_score')):>5}  "
            f"{topic[:26]:<26}  {(tickers or '-')[:14]:<14}  {text}"
        )
        say(line[: self._width - 1])

    def count(self, ids: set[str] | None = None) -> int:
        with self._lock:
            return len(self.seen if ids is None else self.seen & ids)

    def count_labelled(self, ids: set[str], sentiment: str) -> int:
        with self._lock:
            return sum(1 for i in ids if self.labels.get(i) == sentiment)


def print_alert(message: dict[str, Any], *, note: str = "") -> None:
    """One line per message on the alerts topic (open, escalate, renotify, resolve), with the
    evidence: the window (event time), its bearish count against the expected, the p-value."""
    say(printable(alert_line(message, note=note)))  # stream text: escape control characters


def alert_line(message: dict[str, Any], *, note: str = "") -> str:
    counts = message.get("counts") or {}
    baseline = message.get("baseline") or {}
    window = message.get("window") or {}
    head = f"ALERT   {note}{message.get('kind', '?')} {message.get('severity', '?')}: {scope_text(message)}"
    try:
        start = datetime.fromisoformat(str(window["start"])).astimezone(UTC)
        end = datetime.fromisoformat(str(window["end"])).astimezone(UTC)
        expected = float(baseline["expected_bearish"])
        p_value = float(message["p_value"])
        bearish, total = int(counts["bearish"]), int(counts["total"])
    except (KeyError, TypeError, ValueError):
        return head
    return (
        f"{head}: {bearish} of {total} stories bearish in {start:%Y-%m-%d %H:%M}-{end:%H:%M} UTC "
        f"(expected {expected:.1f}), p = {p_value:.1e}"
    )


def scope_text(message: dict[str, Any]) -> str:
    """`market`, `topic Energy / Oil`, `ticker BA`."""
    scope = str(message.get("scope", "?"))
    return scope if scope == "market" else f"{scope} {message.get('key', '?')}"

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.alerting import buckets_from_rows, detect
from services.cli.app import app
from services.embedded import (
    DEMO_SOURCE,
    MIN_ITEMS,
    DemoFeed,
    DemoTimeline,
    ServiceProcess,
    anchor_for,
    anchor_from_burst_start,
    demo_feed,
    demo_timeline,
)
from services.embedded.console import StreamPrinter, alert_line
from services.embedded.demo_feed import BURST_SIZE
from services.embedded.supervisor import uncompiled_reason

ANCHOR = datetime(2025, 3, 4, 15, 30, tzinfo=UTC)
TIMELINE = DemoTimeline()


def _rows(*, focus_bearish: int = 19, seed: int = 0) -> list[tuple[str, bool]]:
    """Labelled headlines: `focus_bearish` bearish ones about $FOCUS, 20 calm ones about it,
    a few bearish ones about other tickers, and 400 calm ones about others."""
    rows = [(f"$FOCUS slides on report {i}", True) for i in range(focus_bearish)]
    rows += [(f"$FOCUS holds meeting {i}", False) for i in range(20)]
    rows += [(f"${chr(65 + i % 26)}X falls {i}", True) for i in range(30)]
    rows += [(f"Company {i} announces results", False) for i in range(400)]
    random.Random(seed).shuffle(rows)
    return rows


def _tickers(text: str) -> list[str]:
    return [word[1:] for word in text.split() if word.startswith("$")]


def _feed(rows: list[tuple[str, bool]], count: int = 300, anchor: datetime = ANCHOR) -> DemoFeed:
    return demo_feed(rows, count=count, seed=7, anchor=anchor, timeline=TIMELINE, tickers_of=_tickers)


def _at(item: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(item["published_at"]))


def test_demo_feed_is_calm_history_then_a_burst_about_one_ticker_then_calm() -> None:
    rows = _rows()
    bearish = {text for text, b in rows if b}
    feed = _feed(rows)
    assert len(feed.items) == 300 and feed.focus == "FOCUS"
    assert all(item["source"] == DEMO_SOURCE and "id" not in item for item in feed.items)
    times = [_at(item) for item in feed.items]
    assert times == sorted(times) and times[-1] < ANCHOR
    assert feed.burst_start == ANCHOR - TIMELINE.after - TIMELINE.burst
    assert feed.history_start == feed.burst_start - TIMELINE.history == times[0]
    # the burst: every bearish headline about the focus, within its three minutes
    assert sorted(str(item["headline"]) for item in feed.burst) == sorted(
        text for text in bearish if text.startswith("$FOCUS")
    )
    assert all(feed.burst_start <= _at(item) < feed.burst_end for item in feed.burst)
    # everything else is calm; the focus's own calm headlines are in the history, spread out
    calm = [item for item in feed.items if item not in feed.burst]
    assert not {str(item["headline"]) for item in calm} & bearish
    assert all(not feed.burst_start <= _at(item) < feed.burst_end for item in calm)
    focus_calm = [_at(item) for item in calm if "$FOCUS" in str(item["headline"])]
    assert len(focus_calm) == 15 and all(t < feed.burst_start for t in focus_calm)
    assert focus_calm[0] - feed.history_start < timedelta(minutes=15)
    assert feed.burst_start - focus_calm[-1] < timedelta(minutes=15)
    assert any(_at(item) >= feed.burst_end for item in calm)  # calm again after the burst


def test_demo_feed_is_deterministic_and_a_rerun_recovers_its_anchor() -> None:
    rows = _rows()
    feed = _feed(rows)
    assert _feed(list(rows)) == feed
    assert anchor_from_burst_start(feed.burst_start, TIMELINE) == ANCHOR
    later = _feed(rows, anchor=ANCHOR + timedelta(hours=5))
    # the same stories (event ids come from source + headline), only at other times
    assert [i["headline"] for i in later.items] == [i["headline"] for i in feed.items]
    assert anchor_for(datetime(2025, 3, 4, 15, 30, 59, 999, tzinfo=UTC)) == ANCHOR


class _Model:
    """A model that labels bearish exactly the headlines it is told to, and counts questions."""

    def __init__(self, bearish: set[str]) -> None:
        self.bearish = bearish
        self.asked = 0

    def __call__(self, texts: Sequence[str]) -> list[bool]:
        self.asked += len(texts)
        return [t in self.bearish for t in texts]


def test_with_a_model_the_demo_replays_only_headlines_it_labels_as_the_data_does() -> None:
    rows = _rows()
    data_bearish = [t for t, b in rows if b]
    # it misses 3 of the 19 bearish headlines about $FOCUS, and calls 50 calm ones bearish
    missed = set(sorted(t for t in data_bearish if t.startswith("$FOCUS"))[:3])
    wrong = {t for t, b in rows if not b and t.startswith("Company")}
    wrong = set(sorted(wrong)[:50])
    model = _Model((set(data_bearish) - missed) | wrong)
    feed = demo_feed(
        rows, count=300, seed=7, anchor=ANCHOR, timeline=TIMELINE, tickers_of=_tickers, model_bearish=model
    )
    assert feed.focus == "FOCUS" and len(feed.burst) == 16
    assert not {str(i["headline"]) for i in feed.burst} & missed
    assert not {str(i["headline"]) for i in feed.items} & wrong
    assert model.asked < len(rows)  # asked about what it needed, not the whole data


def test_a_model_that_disagrees_about_the_focus_gets_a_market_wide_burst_of_what_it_agrees_on() -> None:
    rows = _rows()
    agreed = {t for t, b in rows if b and not t.startswith("$FOCUS")}
    feed = demo_feed(
        rows,
        count=300,
        seed=7,
        anchor=ANCHOR,
        timeline=TIMELINE,
        tickers_of=_tickers,
        model_bearish=_Model(agreed),
    )
    assert feed.focus is None and len(feed.burst) == BURST_SIZE
    assert {str(i["headline"]) for i in feed.burst} <= agreed


def test_a_model_that_labels_nothing_bearish_leaves_the_data_labels_to_decide() -> None:
    rows = _rows()
    assert (
        demo_feed(
            rows,
            count=300,
            seed=7,
            anchor=ANCHOR,
            timeline=TIMELINE,
            tickers_of=_tickers,
            model_bearish=_Model(set()),
        ).burst
        == _feed(rows).burst
    )


def test_without_a_ticker_bearish_enough_the_burst_is_market_wide() -> None:
    feed = _feed(_rows(focus_bearish=10), count=100)
    assert feed.focus is None and len(feed.burst) == BURST_SIZE and len(feed.items) == 100


@pytest.mark.parametrize(
    ("rows", "count", "message"),
    [
        (_rows(), MIN_ITEMS - 1, "at least 29 headlines"),
        ([(f"calm {i}", False) for i in range(100)] + [(f"bad {i}", True) for i in range(5)], 50, "bearish"),
        ([(f"calm {i}", False) for i in range(10)] + [(f"bad {i}", True) for i in range(30)], 50, "calm"),
    ],
)
def test_demo_feed_refuses_data_that_cannot_make_a_demo(
    rows: list[tuple[str, bool]], count: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _feed(rows, count=count)


def test_the_timeline_leaves_room_for_the_warmup_and_the_lateness() -> None:
    timeline = demo_timeline(
        warmup=timedelta(hours=2), window=timedelta(minutes=10), lateness=timedelta(minutes=10)
    )
    assert timeline.history >= timedelta(hours=2, minutes=10)
    assert timeline.after >= timedelta(minutes=13)
    assert (
        demo_timeline(warmup=timedelta(hours=1), window=timedelta(minutes=10), lateness=timedelta(minutes=2))
        == DemoTimeline()
    )


@dataclass(frozen=True)
class _Scored:
    event_id: str
    published_at: datetime
    topic: str
    sentiment: str
    sentiment_score: float
    tickers: tuple[str, ...]


def test_the_default_detector_raises_the_demo_alert_on_the_burst_and_nothing_before() -> None:
    """The feed scored as labelled, through the alerter's own detector with its defaults:
    the first detection is on the focus ticker or the market, in a window holding the burst."""
    rows = _rows()
    labels = dict(rows)
    feed = _feed(rows)
    scored = [
        _Scored(
            event_id=str(i),
            published_at=_at(item),
            topic="Stock Movement",
            sentiment="bearish" if labels[str(item["headline"])] else "neutral",
            sentiment_score=0.0,
            tickers=tuple(_tickers(str(item["headline"]))),
        )
        for i, item in enumerate(feed.items)
    ]
    run = detect(buckets_from_rows(scored), until=ANCHOR)
    assert run.detections, "the demo's burst raised nothing"
    keys = {(d.scope, d.key) for d in run.detections if d.scope != "topic"}
    # The focus ticker alerts; the market does not, since the detector takes the biggest
    # topic or ticker burst out of the market's counts (one flood, one alert).
    assert keys == {("ticker", "FOCUS")}
    first = min(d.window_end for d in run.detections)
    assert feed.burst_start < first <= feed.burst_end + timedelta(minutes=1)
    strongest = min(d.p_value for d in run.detections if d.key == "FOCUS")
    assert strongest <= 1e-7  # severity high or critical, not a borderline warning


def test_stream_printer_prints_each_item_once_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    printer = StreamPrinter({"e1": "Acme beats"}, quiet=False)
    item = {
        "event_id": "e1",
        "sentiment": "bullish",
        "sentiment_score": 0.8,
        "topic": "Earnings",
        "tickers": ["ACME"],
    }
    printer(item)
    printer(item)
    printer(
        {"event_id": "e2", "sentiment": "bearish", "sentiment_score": -0.5, "topic": "Macro", "tickers": []}
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("bullish +0.80") and "ACME" in lines[0] and lines[0].endswith("Acme beats")
    assert lines[1].startswith("bearish -0.50") and lines[1].endswith("e2")
    assert printer.count() == 2 and printer.count({"e1", "e9"}) == 1 and printer.first_at is not None


def test_exit_when_done_without_demo_is_one_line_error() -> None:
    result = CliRunner().invoke(app, ["run", "--exit-when-done"])
    assert result.exit_code == 2
    assert "--exit-when-done needs --demo" in result.output
    assert "Traceback" not in result.output


def test_run_refuses_a_model_dir_without_manifest(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--model", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a finsent model directory" in result.output


def test_service_process_logs_the_command_and_reports_its_exit(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "help.log"
    service = ServiceProcess("--help", env={"FINSENT_HOME": str(tmp_path)}, log_path=log)
    assert service.pid is None and service.exit_code() is None and service.stop() is None
    service.start()  # `python -m services --help`: prints the usage and exits
    assert service.pid is not None
    deadline = time.monotonic() + 60
    while service.exit_code() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.exit_code() == 0
    assert "Usage" in service.log_tail(lines=200)
    assert service.stop() == 0 and service.stop() is None  # safe to call twice


def test_stream_printer_escapes_control_characters(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message cannot clear the operator's terminal, recolour it or hide text (bidi override)."""
    monkeypatch.setenv("COLUMNS", "200")  # lines are cut to the terminal's width: room for all of it
    printer = StreamPrinter({"e\x1b[2J": "Acme \x1b]0;pwned\x07 beats\u202e"}, quiet=False)
    printer(
        {
            "event_id": "e\x1b[2J",
            "sentiment": "bull\x1bish",
            "sentiment_score": 0.8,
            "topic": "Earn\nings",
            "tickers": ["AC\x1bME"],
        }
    )
    printer({"event_id": "e2\r\x1b[1A", "sentiment": "bearish", "sentiment_score": -0.5, "topic": "Macro"})
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 2
    assert "\\x1b]0;pwned\\x07" in lines[0] and "\\u202e" in lines[0] and "Earn\\nings" in lines[0]
    assert lines[1].endswith("e2\\r\\x1b[1A")


def test_an_alert_line_carries_its_evidence() -> None:
    message = {
        "kind": "open",
        "severity": "high",
        "scope": "ticker",
        "key": "BA",
        "window": {"start": "2025-03-04T15:10:00+00:00", "end": "2025-03-04T15:20:00+00:00"},
        "counts": {"total": 21, "bearish": 17, "share": 0.81},
        "baseline": {"share": 0.07, "items": 15.0, "expected_bearish": 1.47},
        "p_value": 3.2e-9,
    }
    assert alert_line(message) == (
        "ALERT   open high: ticker BA: 17 of 21 stories bearish in 2025-03-04 15:10-15:20 UTC "
        "(expected 1.5), p = 3.2e-09"
    )
    market = {**message, "scope": "market", "key": "*"}
    assert alert_line(market, note="(earlier) ").startswith("ALERT   (earlier) open high: market: 17 of 21")
    # a message without evidence (an older format) still gets its one line
    assert alert_line({"kind": "resolve", "severity": "high", "scope": "topic", "key": "IPO"}) == (
        "ALERT   resolve high: topic IPO"
    )


@pytest.mark.parametrize(
    ("compile_set", "demo", "has_compiler", "reason"),
    [
        (True, True, False, None),  # FINSENT_COMPILE given: honoured, whatever else holds
        (True, False, False, None),
        (False, True, True, "demo"),
        (False, False, True, None),
        (False, False, False, "no compiler"),
    ],
)
def test_run_serves_uncompiled_for_a_demo_or_without_a_compiler(
    compile_set: bool, demo: bool, has_compiler: bool, reason: str | None
) -> None:
    assert uncompiled_reason(compile_set=compile_set, demo=demo, has_compiler=has_compiler) == reason


@pytest.mark.parametrize(
    "fields",
    [
        {"sentiment_score": "x"},
        {"sentiment_score": None},
        {"sentiment_score": float("nan")},
        {"sentiment_score": [1]},
        {"tickers": 7},
        {"tickers": "ACME"},
        {"tickers": {"a": 1}},
    ],
)
def test_stream_printer_shows_malformed_fields_as_unknown_and_goes_on(
    capsys: pytest.CaptureFixture[str], fields: dict[str, object]
) -> None:
    printer = StreamPrinter({"e1": "Acme beats"}, quiet=False)
    printer({"event_id": "e1", "sentiment": "bullish", "sentiment_score": 0.5, "topic": "Earnings", **fields})
    printer(
        {
            "event_id": "e2",
            "sentiment": "bearish",
            "sentiment_score": -0.25,
            "topic": "Macro",
            "tickers": ["BA"],
        }
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and printer.count() == 2
    shown = "?" if "sentiment_score" in fields else "+0.50"
    assert lines[0].split()[:2] == ["bullish", shown]
    assert "-0.25" in lines[1] and " BA " in lines[1]

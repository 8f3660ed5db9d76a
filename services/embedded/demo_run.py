"""`finsent run --demo` around its feed: laying the feed out for the serving model, setting
up its subscription and login, and following its outcome in the database.

The feed's layout and why are in demo_feed.py; what is set up, in demo_setup.py; the
queries, in demo_watch.py. This module ties them to one run: `prepare_demo` before the
services start, `DemoWatch` while the supervisor runs, `demo_failure` when it must give up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from services.embedded.console import StreamPrinter, print_alert, say, scope_text
from services.embedded.errors import DemoFailed, RunError

if TYPE_CHECKING:
    from services.embedded.demo_feed import DemoFeed
    from services.learning.serving import OnDatabase
    from services.settings import Settings

T = TypeVar("T")

DEMO_ITEMS = 300
DEMO_RATE = 10.0
DEMO_ALERT_WAIT_S = 180.0  # after the last demo item is scored
DEMO_POLL_S = 1.0


@dataclass
class DemoRun:
    """The demo feed with what the supervisor watches for: the burst's stories, the demo
    subscription, the dashboard login."""

    feed: DemoFeed
    items: dict[str, dict[str, Any]]  # by event id, in event-time order
    burst_ids: set[str]
    subscription_id: int
    subscription_enabled: bool
    password: str
    earlier: bool  # the anchor of an earlier run of this demo on this database
    bucket: timedelta

    @property
    def judged_by(self) -> datetime:
        """Once the alerter has judged up to here, the windows that close with the burst (where
        it is the most unusual) are judged."""
        return self.feed.burst_end + self.bucket


def in_session(on_database: OnDatabase, action: Callable[[Any], T]) -> T:
    """`action(session)` in one committed transaction on the configured database."""
    from services.storage import make_engine, session_factory

    def run(url: str) -> T:
        engine = make_engine(url)
        try:
            with session_factory(engine).begin() as session:
                return action(session)
        finally:
            engine.dispose()

    return on_database(run)


def prepare_demo(settings: Settings, items: int, model_dir: Path, on_database: OnDatabase) -> DemoRun:
    """Lay out the demo feed (anchored as an earlier run on this database was, if any), and
    set up its subscription and dashboard login."""
    from bert_core import SENTIMENT_LABELS, DataError, LabelSet, read_labelled
    from services.alerting.config import alerter_config
    from services.embedded.demo_feed import anchor_for, anchor_from_burst_start, demo_feed, demo_timeline
    from services.schemas.tickers import extract_tickers

    path = settings.training.sentiment_data
    if not path.is_file():
        raise RunError(
            f"--demo replays headlines from {path}, which does not exist; set FINSENT_SENTIMENT_DATA"
        )
    try:
        data = read_labelled(path, LabelSet("sentiment", SENTIMENT_LABELS))
        config = alerter_config(settings)
    except (DataError, ValueError) as exc:
        raise RunError(f"--demo: {exc}") from None
    bearish = SENTIMENT_LABELS.index("bearish")
    rows = [(text, label == bearish) for text, label in zip(data.texts, data.labels, strict=True)]
    timeline = demo_timeline(
        warmup=config.detector.warmup, window=config.detector.window, lateness=config.lateness
    )

    model_bearish = _ModelBearish(settings, model_dir)

    def lay_out(anchor: datetime) -> DemoFeed:
        try:
            return demo_feed(
                rows,
                count=items,
                seed=settings.training.seed,
                anchor=anchor,
                timeline=timeline,
                tickers_of=extract_tickers,
                model_bearish=model_bearish,
            )
        except ValueError as exc:
            raise RunError(f"--demo: {path}: {exc}") from None

    feed = lay_out(anchor_for(datetime.now(UTC)))
    # A re-run keeps the first run's times: the same stories at the same event times, so the
    # scorer stores nothing twice and the alerter judges nothing anew (same alert identity).
    first_burst = next((enc.event_id for _, enc in encodable(list(feed.burst[:1]))), None)
    stored = in_session(on_database, lambda session: _stored_time(session, first_burst))
    earlier = stored is not None
    if stored is not None and stored != feed.burst_start:
        feed = lay_out(anchor_from_burst_start(stored, timeline))
    model_bearish.close()
    if model_bearish.asked:
        say(
            f"demo      {model_bearish.asked} candidate headlines scored in {model_bearish.seconds:.1f} s: "
            "it replays those the model labels as the data does (bearish in the burst, not in the calm)"
        )
    by_id = {enc.event_id: item for item, enc in encodable(list(feed.items))}
    burst_ids = {enc.event_id for _, enc in encodable(list(feed.burst))}
    sub_id, enabled = in_session(on_database, _ensure_subscription)
    from services.embedded.demo_setup import ensure_demo_user

    try:
        password = in_session(on_database, lambda session: ensure_demo_user(session, settings.home))
    except OSError as exc:
        raise RunError(f"--demo: cannot set up the demo dashboard login: {exc}") from None
    return DemoRun(feed, by_id, burst_ids, sub_id, enabled, password, earlier, config.detector.bucket_width)


class _ModelBearish:
    """Which headlines the serving model labels bearish, remembered (the demo is laid out
    twice when it recovers an earlier run's anchor). The model is loaded on first use, as
    the worker loads it, and let go after the layout."""

    def __init__(self, settings: Settings, model_dir: Path) -> None:
        self._settings = settings
        self._model_dir = model_dir
        self._predictor: Any = None
        self._known: dict[str, bool] = {}
        self.seconds = 0.0

    def __call__(self, texts: Sequence[str]) -> list[bool]:
        started = time.monotonic()
        missing = [t for t in texts if t not in self._known]
        if missing:
            if self._predictor is None:
                from bert_core import BertCoreError, Predictor

                try:
                    self._predictor = Predictor.load(
                        self._model_dir,
                        precision=self._settings.inference.precision,
                        threads=self._settings.inference.torch_threads,
                    )
                except (BertCoreError, OSError) as exc:
                    raise RunError(f"--demo: cannot load the model {self._model_dir}: {exc}") from None
            for text, prediction in zip(missing, self._predictor.predict(missing), strict=True):
                self._known[text] = prediction.sentiment == "bearish"
        self.seconds += time.monotonic() - started
        return [self._known[t] for t in texts]

    @property
    def asked(self) -> int:
        return len(self._known)

    def close(self) -> None:
        self._predictor = None


def _stored_time(session: Any, event_id: str | None) -> datetime | None:
    from services.embedded.demo_watch import stored_published_at

    return None if event_id is None else stored_published_at(session, event_id)


def _ensure_subscription(session: Any) -> tuple[int, bool]:
    from services.embedded.demo_setup import ensure_demo_subscription

    return ensure_demo_subscription(session, now=datetime.now(UTC))


def encodable(items: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], Any]]:
    """Items the scorer will accept, with their encoding (the rest would never be scored)."""
    from services.ingest.encoding import encode_news
    from services.schemas import InvalidMessage

    for item in items:
        try:
            yield item, encode_news(item)
        except InvalidMessage:
            continue


def describe_demo(run: DemoRun, rate: float) -> None:
    feed = run.feed
    about = f"${feed.focus}" if feed.focus else "the market"
    n_calm = len(run.items) - len(run.burst_ids)
    say(
        f"demo      replaying {len(run.items)} real headlines at {rate:g}/s by event time: "
        f"{n_calm} calm ones from {feed.history_start:%H:%M} to {feed.anchor:%H:%M} UTC, and a burst of "
        f"{len(run.burst_ids)} bearish ones about {about} at {feed.burst_start:%H:%M}-{feed.burst_end:%H:%M}"
    )
    if run.earlier:
        say(
            f"demo      this database holds an earlier run of the demo ({feed.anchor:%Y-%m-%d %H:%M} UTC): "
            "the same stories at the same times, so nothing new is stored or raised "
            "(a fresh FINSENT_HOME replays it anew)"
        )
    if not run.subscription_enabled:
        say("demo      note: the subscription finsent-demo is paused; its alert will not be delivered")


class DemoWatch:
    """Follows the demo's outcome in the database: its alerts and their delivery to the demo
    subscription, and how far the alerter has judged (to tell "not yet" from "not at all")."""

    def __init__(
        self,
        run: DemoRun,
        printer: StreamPrinter,
        settings: Settings,
        started_at: datetime,
        on_database: OnDatabase,
    ) -> None:
        self.run = run
        self._printer = printer
        self._settings = settings
        self._started_at = started_at
        self._on_database = on_database
        self._next_poll = 0.0
        self._shown: set[str] = set()
        self.delivered = False
        self.judged_without_alert = False
        self._hint_shown = False
        self._absence_noted = False

    def poll(self) -> None:
        """At most once per DEMO_POLL_S; a busy database (SQLite locked) is asked again later."""
        now = time.monotonic()
        if now < self._next_poll or self.delivered:
            return
        self._next_poll = now + DEMO_POLL_S
        from sqlalchemy.exc import OperationalError

        from services.embedded.demo_watch import demo_alerts, judged_until

        def look(session: Any) -> tuple[datetime | None, list[Any]]:
            # the checkpoint first: alerts are committed with it, so none judged is missed
            judged = judged_until(session)
            found = demo_alerts(
                session,
                burst_ids=self.run.burst_ids,
                since=self.run.feed.history_start,
                subscription_id=self.run.subscription_id,
            )
            return judged, found

        try:
            judged, found = in_session(self._on_database, look)
        except OperationalError:
            return
        for alert in found:
            if alert.alert_key not in self._shown:
                self._shown.add(alert.alert_key)
                if alert.created_at < self._started_at:  # this run's are printed from the topic
                    print_alert(alert.message, note="(raised by an earlier run of this demo) ")
        self.judged_without_alert = not found and judged is not None and judged >= self.run.judged_by
        delivered = [a for a in found if a.delivered_at is not None]
        if delivered:
            self.delivered = True
            say(
                f"delivered the demo alert ({scope_text(delivered[0].message)}) to the subscription "
                f"finsent-demo (log channel; see {self._settings.logs_dir / 'dispatcher.log'})"
            )
            self.print_dashboard_hint()

    def bearish_in_burst(self) -> int:
        return self._printer.count_labelled(self.run.burst_ids, "bearish")

    def note_absence(self, waited: float) -> None:
        """Without --exit-when-done: say once that the alert did not come, and keep serving."""
        if self._absence_noted or not (self.judged_without_alert or waited >= DEMO_ALERT_WAIT_S):
            return
        self._absence_noted = True
        say(
            f"demo      no demo alert: the model labelled {self.bearish_in_burst()} of the "
            f"{len(self.run.burst_ids)} burst headlines bearish (a better model: `finsent train`)"
        )
        self.print_dashboard_hint()

    def print_dashboard_hint(self) -> None:
        """How to look at the same data in the dashboard (once)."""
        from services.embedded.demo_setup import DEMO_USER

        if self._hint_shown:
            return
        self._hint_shown = True

        s = self._settings
        database = "" if "database_url" not in s.database.model_fields_set else "FINSENT_DATABASE_URL=… "
        say(
            f"dashboard FINSENT_HOME={s.home} {database}finsent dashboard   then open "
            f"http://{s.dashboard.dashboard_host}:{s.dashboard.dashboard_port} "
            f"and log in as {DEMO_USER} / {self.run.password} "
            f"(a demo-only login; remove it with `finsent dashboard users remove {DEMO_USER}`)"
        )


def demo_failure(watch: DemoWatch, waited: float) -> None:
    """`DemoFailed` with one line once it is certain (or long enough) that the demo alert will
    not come; otherwise nothing (keep waiting)."""
    burst = len(watch.run.burst_ids)
    if watch.judged_without_alert or waited >= DEMO_ALERT_WAIT_S:
        watch.print_dashboard_hint()  # the scored news is there to look at all the same
    if watch.judged_without_alert:
        raise DemoFailed(
            f"the demo's alert did not appear: the alerter judged the burst and found nothing unusual; "
            f"the model labelled {watch.bearish_in_burst()} of its {burst} bearish headlines bearish "
            "(a better model: `finsent train`)"
        )
    if waited >= DEMO_ALERT_WAIT_S:
        raise DemoFailed(
            f"the demo's alert was not delivered within {DEMO_ALERT_WAIT_S:g} s of the last item scored "
            f"({watch.bearish_in_burst()} of the {burst} burst headlines labelled bearish); see the logs of "
            "the alerter and the dispatcher in FINSENT_HOME/logs"
        )

"""The dashboard's pure functions and its queries on the seeded SQLite database."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import dashboard_seed as seed
import pytest
from dashboard_support import *  # noqa: F403 (the fixtures)
from sqlalchemy.orm import Session

from dashboards.access import ACTIONS, ROLES, PermissionDenied, User, can, require
from dashboards.data import indices, labelling, models, news
from dashboards.data.indices import TimeRange
from dashboards.data.labelling import QueueItem
from dashboards.data.news import NewsFilter
from dashboards.movers import rank_movers
from dashboards.users_file import (
    LoginThrottle,
    UserEntry,
    UsersFileError,
    authenticate,
    hash_password,
    read_users,
    remove_user,
    upsert_user,
)
from services.storage import make_engine, session_factory

ALL = TimeRange(seed.START, seed.END)
STORIES = [s.item for s in seed.stories()]
OIL = sum(1 for s in STORIES if s.topic == "Energy / Oil")


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


# --------------------------------------------------------------------------- permissions


def test_permission_table() -> None:
    allowed = {role: {a for a in ACTIONS if can(role, a)} for role in ROLES}
    assert allowed["viewer"] == {"view"}
    assert allowed["analyst"] == {"view", "label", "alert.act", "subscription.edit", "subscription.test"}
    assert allowed["admin"] == set(ACTIONS)
    assert allowed["viewer"] < allowed["analyst"] < allowed["admin"]


def test_unknown_roles_and_actions_are_refused() -> None:
    assert not can("root", "view")
    assert not can(None, "view")
    assert not can("admin", "drop tables")
    with pytest.raises(PermissionDenied):
        require(User("vera", "viewer"), "label")
    with pytest.raises(PermissionDenied):
        require(None, "view")
    assert require(User("adam", "admin"), "model.promote").name == "adam"


# --------------------------------------------------------------------------- users file


def test_users_file_round_trip_and_authentication(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    assert upsert_user(path, UserEntry("alice", "analyst", hash_password("s3cret-pass", rounds=4))) is True
    assert upsert_user(path, UserEntry("alice", "analyst", hash_password("s3cret-pass", rounds=4))) is False
    with pytest.raises(UsersFileError, match="user name"):
        upsert_user(path, UserEntry('we"ird', "viewer", None))
    users = read_users(path)
    assert users["alice"].role == "analyst"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert authenticate(users, "alice", "s3cret-pass") == users["alice"]
    assert authenticate(users, "alice", "wrong-pass") is None
    assert authenticate(users, "nobody", "s3cret-pass") is None
    assert remove_user(path, "alice") and "alice" not in read_users(path)


def test_users_file_refuses_bad_entries(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text('[users.eve]\nrole = "superuser"\n', encoding="utf-8")
    with pytest.raises(UsersFileError, match="role must be one of"):
        read_users(path)
    path.write_text("not toml [", encoding="utf-8")
    with pytest.raises(UsersFileError, match="not valid TOML"):
        read_users(path)
    with pytest.raises(UsersFileError, match="at least"):
        hash_password("short")
    assert read_users(tmp_path / "absent.toml") == {}


ATTACKER = "203.0.113.9"
ADMIN_DESK = "198.51.100.7"


def test_login_throttle_blocks_after_repeated_failures() -> None:
    throttle = LoginThrottle(max_failures=3, window=60)
    for t in (0.0, 1.0, 2.0):
        assert throttle.blocked_for("eve", ATTACKER, now=t) == 0
        throttle.failed("eve", ATTACKER, now=t)
    assert throttle.blocked_for("eve", ATTACKER, now=3.0) == pytest.approx(57.0)
    assert throttle.blocked_for("bob", ATTACKER, now=3.0) == 0
    assert throttle.blocked_for("eve", ATTACKER, now=61.0) == 0  # the first failure has aged out


def test_failed_logins_from_one_address_do_not_lock_the_user_out_elsewhere() -> None:
    """Anyone could lock out an admin by failing five logins under the admin's name."""
    throttle = LoginThrottle(max_failures=3, window=60)
    for t in range(10):
        throttle.failed("admin", ATTACKER, now=float(t))
    assert throttle.blocked_for("admin", ATTACKER, now=10.0) > 0
    assert throttle.blocked_for("admin", ADMIN_DESK, now=10.0) == 0
    throttle.succeeded("admin", ADMIN_DESK)
    assert throttle.blocked_for("admin", ATTACKER, now=11.0) > 0  # the attacker stays blocked


def test_one_address_trying_many_names_is_blocked() -> None:
    throttle = LoginThrottle(max_failures=3, max_client_failures=10, window=60)
    for i in range(10):
        throttle.failed(f"user{i}", ATTACKER, now=float(i))
    assert throttle.blocked_for("someone-new", ATTACKER, now=10.0) > 0
    assert throttle.blocked_for("someone-new", ADMIN_DESK, now=10.0) == 0


def test_a_global_failure_rate_blocks_failing_addresses_but_not_a_fresh_one() -> None:
    """A spread-out attack (many addresses) is capped by the global budget: once it is spent,
    an address that failed in the window is refused; the real user at an address with no
    failures still gets in."""
    throttle = LoginThrottle(max_failures=3, max_client_failures=10, max_global_failures=20, window=60)
    for i in range(20):
        throttle.failed("admin", f"10.0.0.{i}", now=float(i) / 10)
    assert throttle.blocked_for("admin", "10.0.0.1", now=3.0) > 0  # one failure there, budget spent
    assert throttle.blocked_for("admin", "10.0.0.99", now=3.0) == 0  # no failure from there
    assert throttle.blocked_for("admin", ADMIN_DESK, now=3.0) == 0
    assert throttle.blocked_for("admin", "10.0.0.1", now=70.0) == 0  # the window has passed


# --------------------------------------------------------------------------- pure ranking


def test_influence_orders_by_score_times_confidence() -> None:
    rows = [
        SimpleNamespace(
            name="sure bear",
            sentiment_score=-0.9,
            p_bearish=0.95,
            p_neutral=0.04,
            p_bullish=0.05,
            published_at=1,
        ),
        SimpleNamespace(
            name="coin toss", sentiment_score=0.0, p_bearish=0.4, p_neutral=0.2, p_bullish=0.4, published_at=2
        ),
        SimpleNamespace(
            name="mild bull", sentiment_score=0.5, p_bearish=0.1, p_neutral=0.3, p_bullish=0.6, published_at=3
        ),
    ]
    assert [r.name for r in news.rank_by_influence(rows)] == ["sure bear", "mild bull", "coin toss"]
    assert news.influence(-0.9, 0.95, 0.04, 0.05) == pytest.approx(0.855)


def test_uncertainty_ranking_margin_then_entropy() -> None:
    assert labelling.margin([0.34, 0.33, 0.33]) == pytest.approx(0.01)
    assert labelling.entropy([1.0, 0.0, 0.0]) == 0
    assert labelling.entropy([1 / 3] * 3) > labelling.entropy([0.5, 0.5, 0.0])

    def item(event_id: str, probs: list[float]) -> QueueItem:
        return QueueItem(
            "uncertain",
            "sentiment",
            event_id,
            event_id,
            None,
            (),
            labelling.margin(probs),
            labelling.entropy(probs),
        )

    ranked = labelling.rank_uncertain(
        [
            item("sure", [0.9, 0.05, 0.05]),
            item("tie-flat", [0.4, 0.4, 0.2]),
            item("tie-peaked", [0.5, 0.5, 0.0]),
            item("close", [0.34, 0.33, 0.33]),
        ]
    )
    assert [i.event_id for i in ranked] == ["tie-flat", "tie-peaked", "close", "sure"]
    disputed = QueueItem("disagreement", "sentiment", "text", None)
    queue = labelling.build_queue([disputed], ranked, done={"close"})
    assert [i.identity for i in queue] == ["text:text", "tie-flat", "tie-peaked", "sure"]  # "close" is done


def test_search_parsing_csv_and_url_safety() -> None:
    assert news.parse_search('oil "supply glut" -opec or') == (["oil", "supply glut"], ["opec"])
    assert news.csv_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert news.csv_safe("@SUM") == "'@SUM"
    assert news.csv_safe("Oil falls") == "Oil falls"
    assert news.safe_url("javascript:alert(1)") is None
    assert news.safe_url("https://news.example/1") == "https://news.example/1"


def test_choose_width_keeps_charts_small() -> None:
    assert indices.choose_width(timedelta(hours=6)) == 60
    assert indices.choose_width(timedelta(days=1)) == 300
    assert indices.choose_width(timedelta(days=30)) == 3600
    assert indices.choose_width(timedelta(days=31)) == 4 * 3600
    assert indices.choose_width(timedelta(days=365)) == 86400
    for days in (1, 7, 30, 365):
        assert timedelta(days=days).total_seconds() / indices.choose_width(timedelta(days=days)) <= 720


def test_find_reports_and_confusion_matrix() -> None:
    metrics = {"dev": {"sentiment": seed.SENTIMENT_REPORT}, "history": [{"accuracy": 1, "per_class": {}}]}
    found = dict(models.find_reports(metrics))
    assert list(found) == ["dev / sentiment"]
    frame = models.confusion_frame(found["dev / sentiment"])
    assert frame is not None and frame.shape == (3, 3) and frame.iloc[0, 0] == 40
    assert models.confusion_frame({"accuracy": 1, "per_class": {}, "confusion_matrix": [[1]]}) is None


# --------------------------------------------------------------------------- queries


def test_index_series_aggregates_in_sql(session: Session) -> None:
    minute = indices.index_series(session, scope="market", key=None, period=ALL, width=60)
    five = indices.index_series(session, scope="market", key=None, period=ALL, width=300)
    assert minute["total"].sum() == five["total"].sum() == seed.MINUTES
    assert len(minute) == seed.MINUTES and len(five) == seed.MINUTES // 5
    assert (five["total"] == 5).all()
    assert five["bucket_start"].iloc[0] == seed.START
    oil = indices.index_series(session, scope="topic", key="Energy / Oil", period=ALL, width=3600)
    assert oil["total"].sum() == OIL
    last_hour = oil.iloc[-1]
    assert last_hour["bearish_share"] > 0.5  # the seeded spike


def test_scope_summary_and_newest_bucket(session: Session) -> None:
    topics = indices.scope_summary(session, scope="topic", period=ALL)
    assert sorted(topics["key"]) == sorted(seed.TOPICS)
    assert topics["total"].sum() == seed.MINUTES
    assert indices.newest_bucket(session) == seed.END - timedelta(minutes=1)


def test_news_filters_narrow_the_result(session: Session) -> None:
    def count(**kw: object) -> int:
        return news.count_news(session, filter=NewsFilter(period=ALL, **kw))[0]  # type: ignore[arg-type]

    assert count() == seed.MINUTES  # one row per story although five have two predictions
    assert count(model_version="v2") == 5
    assert 0 < count(sentiments=("bearish",)) < seed.MINUTES
    assert count(topics=("Energy / Oil",)) == OIL
    assert count(ticker="xom") == OIL
    assert count(source="Reuters") == seed.MINUTES // 3
    assert count(min_confidence=0.9) < count(min_confidence=0.6) < seed.MINUTES
    assert count(text="OPEC") == 1
    assert count(text="plunge -opec") == 1
    assert count(text="50%_") == 0  # LIKE wildcards are escaped
    assert news.count_news(session, filter=NewsFilter(period=ALL), cap=100) == (100, True)


def test_a_search_text_is_used_up_to_its_limit(session: Session) -> None:
    """A client can send a text box any length: 40,000 words were as many LIKE conditions,
    more bound parameters than SQLite takes (and as long a tsquery on PostgreSQL)."""
    words = " ".join(f"w{i}" for i in range(40_000))
    assert news.count_news(session, filter=NewsFilter(period=ALL, text=words)) == (0, False)
    oil = news.count_news(session, filter=NewsFilter(period=ALL, text="oil"))
    assert oil[0] > 0
    padded = "oil" + " " * news.MAX_SEARCH_CHARS + "nowhere"  # the words past the limit are ignored
    assert news.count_news(session, filter=NewsFilter(period=ALL, text=padded)) == oil


def test_keyset_pages_cover_every_story_once(session: Session) -> None:
    flt = NewsFilter(period=ALL)
    seen: list[str] = []
    cursor = None
    while True:
        page = news.news_page(session, filter=flt, page_size=70, after=cursor)
        seen += list(page.rows["event_id"])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == seed.MINUTES
    assert seen[0] == f"ev-{seed.MINUTES - 1:03d}"  # newest first
    assert news.clamp_page_size(10_000) == news.MAX_PAGE_SIZE and news.clamp_page_size(0) == 1


def test_drilldown_sorted_by_influence(session: Session) -> None:
    frame = news.drilldown(
        session, scope="topic", key="Energy / Oil", period=TimeRange(seed.END - timedelta(hours=1), seed.END)
    )
    assert list(frame["influence"]) == sorted(frame["influence"], reverse=True)
    assert frame["headline"].iloc[0] == seed.SCRIPT_HEADLINE
    ticker = news.drilldown(session, scope="ticker", key="AAPL", period=ALL)
    assert len(ticker) == len([m for m in range(seed.MINUTES) if m % 10 == 1 and m % 4 != 0])


def test_export_csv_neutralises_formulas(session: Session) -> None:
    data = news.export_csv(session, filter=NewsFilter(period=ALL), max_rows=50).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(data)))
    assert len(rows) == 50
    headlines = {r["headline"] for r in rows}
    assert "'" + seed.FORMULA_HEADLINE in headlines
    assert seed.SCRIPT_HEADLINE in headlines
    assert all(not r["url"].startswith("javascript") for r in rows)


def test_labelling_queue_sources(session: Session) -> None:
    window = TimeRange(seed.END - timedelta(days=7), seed.END)
    disputed = labelling.disagreements(session, task="sentiment")
    assert [d.text for d in disputed] == [seed.DISPUTED_TEXT]
    assert dict(disputed[0].labels) == {"alice": "bullish", "bob": "bearish"}
    uncertain = labelling.uncertain_stories(session, task="sentiment", period=window, limit=10)
    assert uncertain[0].text == seed.UNSURE_HEADLINE
    assert [i.sureness for i in uncertain] == sorted(i.sureness for i in uncertain)
    topics = labelling.uncertain_stories(session, task="topic", period=window, limit=10)
    assert all(i.sureness == pytest.approx(0.5) for i in topics)


def test_time_range_validation() -> None:
    with pytest.raises(ValueError):
        TimeRange(seed.END, seed.START)
    with pytest.raises(ValueError):
        TimeRange(datetime(2026, 1, 1), datetime(2026, 1, 2))  # naive
    assert TimeRange.ending(seed.END, timedelta(hours=1)).start == seed.END - timedelta(hours=1)
    assert seed.END.tzinfo is UTC


def test_mover_counts_feed_the_ranking(session: Session) -> None:
    window = TimeRange(seed.END - timedelta(minutes=30), seed.END)
    baseline = TimeRange(seed.START, window.start)
    rows, market_now, market_before = indices.mover_counts(
        session, scope="topic", window=window, baseline=baseline
    )
    assert (market_now, market_before) == (30, seed.MINUTES - 30)
    by_key = {r.key: r for r in rows}
    oil_now = indices.index_series(session, scope="topic", key="Energy / Oil", period=window, width=60)
    oil_before = indices.index_series(session, scope="topic", key="Energy / Oil", period=baseline, width=60)
    oil = by_key["Energy / Oil"]
    assert (oil.total, oil.bearish) == (int(oil_now["total"].sum()), int(oil_now["bearish"].sum()))
    assert (oil.base_total, oil.base_bearish) == (
        int(oil_before["total"].sum()),
        int(oil_before["bearish"].sum()),
    )
    assert all(r.bearish > 0 for r in rows)  # keys without bearish news now are not fetched
    ranked = rank_movers(rows, market_total=market_now, market_base_total=market_before)
    assert ranked[0].key == "Energy / Oil" and ranked[0].share > ranked[0].usual_share


def test_newest_bucket_ignores_buckets_dated_in_the_future(session: Session) -> None:
    """A story stored with a date in 2099 must not move every dashboard range to 2099."""
    from services.alerting import MARKET_KEY
    from services.storage.alert_models import SentimentBucketRow

    future = datetime(2099, 1, 1, tzinfo=UTC)
    session.add(
        SentimentBucketRow(
            scope="market",
            key=MARKET_KEY,
            width_seconds=60,
            bucket_start=future,
            total=1,
            bearish=1,
            neutral=0,
            bullish=0,
            score_sum=-1.0,
            updated_at=future,
        )
    )
    session.commit()
    now = datetime.now(UTC)
    assert indices.newest_bucket(session, not_after=now) == seed.END - timedelta(minutes=1)
    assert indices.newest_bucket(session, not_after=seed.END - timedelta(minutes=30)) == seed.END - timedelta(
        minutes=30
    )


def test_data_end_stays_at_the_newest_minute_not_after_now(session: Session, db_url: str) -> None:
    """The anchor of every preset range and of the labelling window, with a 2099 row stored."""
    from dashboards import ui
    from services.alerting import MARKET_KEY
    from services.settings import Settings
    from services.storage.alert_models import SentimentBucketRow

    settings = Settings(database_url=db_url, dashboard_cache_seconds=0)
    before = ui.data_end(settings)
    future = datetime(2099, 1, 1, tzinfo=UTC)
    session.add(
        SentimentBucketRow(
            scope="market",
            key=MARKET_KEY,
            width_seconds=settings.alerts.alert_bucket_seconds,
            bucket_start=future,
            total=1,
            bearish=1,
            neutral=0,
            bullish=0,
            score_sum=-1.0,
            updated_at=future,
        )
    )
    session.commit()
    assert ui.data_end(settings) == before == seed.END


def test_a_superseded_alert_is_shown_as_withdrawn() -> None:
    """The alerter withdraws a notified alert it superseded; the feed says so, and the
    alerter's own statuses are shown as they are."""
    from dashboards.data.alerts import AlertView

    t = datetime(2025, 3, 3, 12, tzinfo=UTC)

    def view(status: str) -> AlertView:
        return AlertView(1, "bearish_spike", "topic", "Financials", "warning", status, t, t, t,
                         None, 1, None, None, None, None, None, None)  # fmt: skip

    assert view("superseded").shown_status == "withdrawn (superseded by late stories)"
    assert view("open").shown_status == "open" and view("resolved").shown_status == "resolved"

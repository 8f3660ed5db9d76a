from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.alerting import (
    MAX_MUTE_HOURS,
    Action,
    Detection,
    LifecycleConfig,
    LifecycleState,
    Severity,
    aggregate,
    apply,
    bearish_event_ids,
    detect,
    history_only,
    mute_until,
    unheard_reopens,
)

from .alert_streams import T0, burst, calm, end_of

MIN = timedelta(minutes=1)
CONFIG = LifecycleConfig()  # resolve after 5 normal minutes, 30 min cooldown, no reminders


def det(
    minute: int, severity: Severity = "warning", *, key: str = "Energy / Oil", scope: str = "topic"
) -> Detection:
    """A detection of the 10-minute window that closes at T0 + `minute`."""
    end = T0 + minute * MIN
    return Detection(
        rule="bearish_spike",
        scope=scope,  # type: ignore[arg-type]
        key=key,
        window_start=end - 10 * MIN,
        window_end=end,
        total=12,
        bearish=8,
        baseline_share=0.15,
        baseline_items=500.0,
        expected_bearish=1.8,
        z_score=5.0,
        p_value=1e-6,
        severity=severity,
        event_ids=(f"e{minute}",),
    )


def kinds(actions: list[Action]) -> list[tuple[str, int]]:
    return [(a.kind, int((a.at - T0) / MIN)) for a in actions]


def test_a_spike_over_consecutive_windows_is_one_alert_then_resolves() -> None:
    run = apply(None, [det(m) for m in range(10, 16)], now=T0 + 16 * MIN)
    assert kinds(run.actions) == [("open", 10)]
    opened = run.actions[0]
    assert opened.notify and opened.detection == det(10)
    assert opened.alert_key == f"bearish_spike|topic|Energy / Oil|{(T0 + 0 * MIN).isoformat()}"
    assert opened.dedupe_key == f"{opened.alert_key}|open|{(T0 + 10 * MIN).isoformat()}"
    alert = run.state.alerts[("bearish_spike", "topic", "Energy / Oil")]
    assert (alert.status, alert.detections, alert.last_detected_at) == ("open", 6, T0 + 15 * MIN)

    # Four normal windows later it is still open; the fifth resolves it, at event time.
    still = apply(run.state, [], now=T0 + 19 * MIN)
    assert still.actions == []
    done = apply(still.state, [], now=T0 + 20 * MIN)
    assert kinds(done.actions) == [("resolve", 20)]
    assert done.actions[0].notify and done.actions[0].alert.status == "resolved"
    assert done.actions[0].alert.alert_key == opened.alert_key


def test_resolution_needs_resolve_after_of_normal_windows_in_a_row() -> None:
    # Windows 11-14 normal, 15 fires again: only four normal windows, still one alert.
    assert kinds(apply(None, [det(10), det(15)], now=T0 + 16 * MIN).actions) == [("open", 10)]
    # Windows 11-15 normal: resolved at 15, and 16 reopens it inside the cooldown.
    assert kinds(apply(None, [det(10), det(16)], now=T0 + 16 * MIN).actions) == [
        ("open", 10),
        ("resolve", 15),
        ("reopen", 16),
    ]


def test_escalation_notifies_once_per_level() -> None:
    ds = [det(10), det(11, "high"), det(12, "warning"), det(13, "high"), det(14, "critical")]
    run = apply(None, ds, now=T0 + 14 * MIN)
    assert kinds(run.actions) == [("open", 10), ("escalate", 11), ("escalate", 14)]
    assert all(a.notify for a in run.actions)
    assert [a.alert.notified_severity for a in run.actions] == ["warning", "high", "critical"]
    assert len({a.dedupe_key for a in run.actions}) == 3


def test_reminders_while_open_when_configured() -> None:
    config = LifecycleConfig(renotify_every=timedelta(minutes=15))
    run = apply(None, [det(m) for m in range(10, 50)], now=T0 + 50 * MIN, config=config)
    assert kinds(run.actions) == [("open", 10), ("renotify", 25), ("renotify", 40)]
    assert kinds(apply(None, [det(m) for m in range(10, 50)], now=T0 + 50 * MIN).actions) == [("open", 10)]


def test_cooldown_reopens_silently_and_a_later_spike_is_a_new_alert() -> None:
    first = apply(None, [det(10), det(11)], now=T0 + 20 * MIN)
    assert kinds(first.actions) == [("open", 10), ("resolve", 16)]
    key = first.actions[0].alert_key

    # Inside the 30-minute cooldown after 16: the same alert, reopened without a page.
    flap = apply(first.state, [det(30)], now=T0 + 30 * MIN)
    assert kinds(flap.actions) == [("reopen", 30)]
    assert not flap.actions[0].notify and flap.actions[0].alert_key == key
    calm_again = apply(flap.state, [], now=T0 + 40 * MIN)
    assert kinds(calm_again.actions) == [("resolve", 35)]

    # ... unless it is worse than what was last notified.
    worse = apply(first.state, [det(30, "high")], now=T0 + 30 * MIN)
    assert kinds(worse.actions) == [("escalate", 30)] and worse.actions[0].notify

    # After the cooldown (from the last resolution, 35) a spike is a new alert.
    later = apply(calm_again.state, [det(65)], now=T0 + 65 * MIN)
    assert kinds(later.actions) == [("open", 65)]
    assert later.actions[0].alert_key != key


def test_resolved_alerts_leave_the_state_after_their_cooldown() -> None:
    run = apply(None, [det(10)], now=T0 + 15 * MIN)
    assert run.state.alerts  # resolved at 15, cooling down
    assert apply(run.state, [], now=T0 + 45 * MIN).state.alerts == {}


def test_scopes_are_independent() -> None:
    ds = [det(10), det(10, key="*", scope="market"), det(11, key="XOM", scope="ticker")]
    run = apply(None, ds, now=T0 + 11 * MIN)
    assert sorted((a.alert.scope, a.alert.key) for a in run.actions if a.kind == "open") == [
        ("market", "*"),
        ("ticker", "XOM"),
        ("topic", "Energy / Oil"),
    ]
    # Event-time order, market before topics before tickers at equal times.
    assert [(a.alert.scope, int((a.at - T0) / MIN)) for a in run.actions] == [
        ("market", 10),
        ("topic", 10),
        ("ticker", 11),
    ]


def test_same_actions_however_the_stream_is_split_and_on_replay() -> None:
    ds = (
        [det(m) for m in range(10, 14)]
        + [det(14, "high"), det(30), det(31)]
        + [det(m) for m in range(70, 75)]
    )
    ds += [det(m, key="XOM", scope="ticker") for m in (12, 13, 40)]
    end = T0 + 90 * MIN
    whole = apply(None, ds, now=end, config=LifecycleConfig(renotify_every=timedelta(minutes=2)))

    state: LifecycleState | None = None
    pieces: list[Action] = []
    t = T0
    while t < end:
        t += MIN
        batch = [d for d in ds if t - MIN < d.window_end <= t]
        step = apply(state, batch, now=t, config=LifecycleConfig(renotify_every=timedelta(minutes=2)))
        pieces.extend(step.actions)
        state = LifecycleState.from_dict(json.loads(json.dumps(step.state.to_dict())))
    assert [(a.dedupe_key, a.notify, a.alert) for a in pieces] == [
        (a.dedupe_key, a.notify, a.alert) for a in whole.actions
    ]
    assert state is not None and state.to_dict() == whole.state.to_dict()
    replay = apply(
        None, list(reversed(ds)), now=end, config=LifecycleConfig(renotify_every=timedelta(minutes=2))
    )
    assert [a.dedupe_key for a in replay.actions] == [a.dedupe_key for a in whole.actions]


def test_refuses_detections_from_the_future() -> None:
    with pytest.raises(ValueError, match="after now"):
        apply(None, [det(10)], now=T0 + 9 * MIN)
    with pytest.raises(ValueError):
        LifecycleConfig(resolve_after=timedelta(0))


def test_detector_and_lifecycle_together_give_one_alert_for_a_topic_burst() -> None:
    start = T0 + timedelta(minutes=150)
    items = calm(minutes=240, seed=1) + burst(size=25, start=start, topic="Energy / Oil")
    until = end_of(items)
    detections = detect(aggregate(items).values(), until=until, event_ids=bearish_event_ids(items)).detections
    assert len([d for d in detections if d.key == "Energy / Oil"]) > 3  # many windows ...
    run = apply(None, detections, now=until)
    topic_opens = [a for a in run.actions if a.kind == "open" and a.alert.scope == "topic"]
    assert [a.alert.key for a in topic_opens] == ["Energy / Oil"]  # ... one alert
    assert topic_opens[0].at - start <= 5 * MIN
    assert {a.kind for a in run.actions if a.alert.scope == "topic"} <= {"open", "escalate", "resolve"}
    assert [a.kind for a in run.actions if a.alert.scope == "topic"][-1] == "resolve"
    assert all(a.at >= start for a in run.actions)


def test_a_mute_ends_hours_after_now_and_is_bounded() -> None:
    assert mute_until(T0, 6) == T0 + timedelta(hours=6)
    assert mute_until(T0, MAX_MUTE_HOURS) == T0 + timedelta(days=30)
    for hours in (0, -1, MAX_MUTE_HOURS + 0.5):
        with pytest.raises(ValueError, match="mute for 0 < hours <= 720"):
            mute_until(T0, hours)


# --------------------------------------------------------------------------- history, not news


def test_an_alert_opened_and_resolved_in_the_past_of_the_watermark_is_history() -> None:
    """A late story's re-run (windows judged before up to minute 60) opens an alert at 10
    and resolves it at 20: recorded, but history. One still open at the end, and one
    resolving after the boundary judged before, are news as always."""
    past = apply(None, [det(m) for m in range(10, 16)], now=T0 + 60 * MIN)
    assert kinds(past.actions) == [("open", 10), ("resolve", 20)]
    key = past.actions[0].alert_key
    assert history_only(past.actions, judged_until=T0 + 60 * MIN) == {key}
    assert history_only(past.actions, judged_until=T0 + 20 * MIN) == {key}  # resolved at the boundary
    # resolving in windows judged for the first time: news
    assert history_only(past.actions, judged_until=T0 + 19 * MIN) == set()
    # a replay (no judged boundary given) notifies everything, as before
    assert history_only(past.actions, judged_until=None) == set()
    # notified before (its opening went out): its resolution must follow
    assert history_only(past.actions, judged_until=T0 + 60 * MIN, notified=[key]) == set()

    still_open = apply(None, [det(m) for m in range(10, 16)], now=T0 + 18 * MIN)
    assert kinds(still_open.actions) == [("open", 10)]
    assert history_only(still_open.actions, judged_until=T0 + 60 * MIN) == set()


def test_only_a_whole_life_in_the_step_is_history() -> None:
    """An alert opened before the step (in the checkpoint's state) and resolved in it was
    notified when it opened: its resolution is news. Reopened silently within the cooldown
    and resolved again, a whole life stays one alert, history as a whole."""
    opened = apply(None, [det(m) for m in range(10, 12)], now=T0 + 12 * MIN)
    later = apply(opened.state, [], now=T0 + 60 * MIN)
    assert kinds(later.actions) == [("resolve", 16)]
    assert history_only(later.actions, judged_until=T0 + 60 * MIN) == set()

    flapping = apply(None, [det(10), det(11), det(20), det(21)], now=T0 + 60 * MIN)
    assert [k for k, _ in kinds(flapping.actions)] == ["open", "resolve", "reopen", "resolve"]
    assert history_only(flapping.actions, judged_until=T0 + 60 * MIN) == {flapping.actions[0].alert_key}
    # the second resolution (minute 26) after the boundary: the whole alert is news
    assert history_only(flapping.actions, judged_until=T0 + 25 * MIN) == set()


def test_a_history_alert_reopened_by_news_is_notified() -> None:
    """History (never notified) resolved at 16; a new detection at 30, inside the cooldown,
    reopens it silently for the lifecycle, but the subscriber never heard of it: news. An
    alert it heard of stays silent when it flaps."""
    history = apply(None, [det(10), det(11)], now=T0 + 25 * MIN)
    key = history.actions[0].alert_key
    assert history_only(history.actions, judged_until=T0 + 25 * MIN) == {key}
    news = apply(history.state, [det(30)], now=T0 + 31 * MIN)
    assert kinds(news.actions) == [("reopen", 30)] and not news.actions[0].notify
    (promoted,) = unheard_reopens(news.actions, heard=set())
    assert promoted.notify and promoted.kind == "reopen" and promoted.alert_key == key
    assert promoted.dedupe_key == news.actions[0].dedupe_key
    assert unheard_reopens(news.actions, heard={key}) == []

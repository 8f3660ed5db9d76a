"""Writes from the pages land in the database: labels, subscriptions, alert actions, promotion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dashboard_seed as seed
from dashboard_support import *  # noqa: F403 (the fixtures)
from dashboard_support import errors, open_page
from sqlalchemy import select

from services.delivery import repository as delivery_repo
from services.learning import registry
from services.learning.label_store import record_labels
from services.learning.labels import NewLabel
from services.storage import (
    AlertRow,
    DeliveryRow,
    LabelRow,
    ModelVersionRow,
    SubscriptionRow,
    make_engine,
    session_factory,
)


def query(url: str, stmt):
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return session.execute(stmt).all()
    finally:
        engine.dispose()


def test_labelling_queue_writes_labels_with_the_analyst_name(make_app, db_url: str) -> None:
    at = open_page(make_app("anna"), "labelling")
    # first the disagreement, then the story the model is least sure of
    assert at.text[0].value == seed.DISPUTED_TEXT
    at.button(key="lq_neutral").click().run()
    assert not errors(at)
    assert at.text[0].value == seed.UNSURE_HEADLINE
    at.button(key="lq_skip").click().run()
    skipped_to = at.text[0].value
    assert skipped_to != seed.UNSURE_HEADLINE
    at.button(key="lq_bearish").click().run()
    assert not errors(at)
    labels = query(
        db_url,
        select(LabelRow.labeller, LabelRow.label, LabelRow.task, LabelRow.source, LabelRow.event_id)
        .where(LabelRow.labeller == "anna")
        .order_by(LabelRow.id),
    )
    assert [(r.label, r.task, r.source) for r in labels] == [
        ("neutral", "sentiment", "dashboard"),
        ("bearish", "sentiment", "dashboard"),
    ]
    assert labels[1].event_id is not None  # the uncertain story, labelled on its event id
    # the topic queue
    at.radio(key="lq_task").set_value("topic").run()
    topic_box = next(s for s in at.selectbox if s.key and s.key.startswith("lq_topic_"))
    topic_box.set_value("Macro").run()
    at.button(key="lq_save_topic").click().run()
    assert not errors(at)
    [topic] = query(
        db_url, select(LabelRow.label).where(LabelRow.task == "topic", LabelRow.labeller == "anna")
    )
    assert topic.label == "Macro"


def _add_labels(url: str, *labels: NewLabel) -> None:
    engine = make_engine(url)
    try:
        with session_factory(engine).begin() as session:
            record_labels(session, list(labels), now=datetime.now(UTC), recent_share=0.0)
    finally:
        engine.dispose()


def test_a_label_goes_to_the_story_on_screen_even_if_the_queue_changed(
    make_app, db_url: str, monkeypatch
) -> None:
    monkeypatch.setenv("FINSENT_DASHBOARD_CACHE_SECONDS", "0")  # every run sees the database as it is
    at = open_page(make_app("anna"), "labelling")
    assert at.text[0].value == seed.DISPUTED_TEXT
    # between the render and the click, two other analysts disagree on another text: the
    # newest disagreement is first in the queue from now on
    other = "a brand-new disputed headline"
    _add_labels(
        db_url,
        NewLabel("sentiment", "bullish", "carl", "test", text=other),
        NewLabel("sentiment", "bearish", "dora", "test", text=other),
    )
    at.button(key="lq_bullish").click().run()
    assert not errors(at)
    labels = query(db_url, select(LabelRow.text, LabelRow.label).where(LabelRow.labeller == "anna"))
    assert [(r.text, r.label) for r in labels] == [(seed.DISPUTED_TEXT, "bullish")]
    assert at.text[0].value == other  # the queue moved on to what is first now

    # the topic task: the selectbox's value at the click, on the story it was drawn with
    at.radio(key="lq_task").set_value("topic").run()
    shown = at.text[0].value
    topic_box = next(s for s in at.selectbox if s.key and s.key.startswith("lq_topic_"))
    topic_box.set_value("Macro")
    _add_labels(
        db_url,
        NewLabel("topic", "Macro", "carl", "test", text=other),
        NewLabel("topic", "Earnings", "dora", "test", text=other),
    )
    at.button(key="lq_save_topic").click().run()
    assert not errors(at)
    [topic] = query(
        db_url,
        select(LabelRow.text, LabelRow.label).where(LabelRow.task == "topic", LabelRow.labeller == "anna"),
    )
    assert (topic.text, topic.label) == (shown, "Macro") and shown != other


def test_subscription_create_edit_pause_delete(make_app, db_url: str) -> None:
    at = open_page(make_app("anna"), "subscriptions")
    at.text_input(key="new_name").input("oil-watch")
    at.selectbox(key="new_channel").set_value("log")
    at.text_input(key="new_target").input("finsent.oil")
    at.text_area(key="new_keys").input("Energy / Oil\n$xom")
    at.form_submit_button[0].click().run()
    assert not errors(at)
    [row] = query(db_url, select(SubscriptionRow).where(SubscriptionRow.name == "oil-watch"))
    assert row[0].keys == ["topic:Energy / Oil", "ticker:XOM"] and row[0].enabled

    # validation is the CLI's: a misspelt topic is refused with a suggestion, nothing stored
    at.text_input(key="new_name").input("typo")
    at.text_area(key="new_keys").input("energy")
    at.form_submit_button[0].click().run()
    assert "did you mean 'Energy / Oil'" in at.error[0].value
    assert not query(db_url, select(SubscriptionRow).where(SubscriptionRow.name == "typo"))

    at.selectbox(key="sub_pick").set_value("oil-watch").run()
    at.button(key="sub_toggle").click().run()
    assert not query(db_url, select(SubscriptionRow.enabled).where(SubscriptionRow.name == "oil-watch"))[0][0]

    at.selectbox(key="sub_pick").set_value("oil-watch").run()
    severity = next(
        s
        for s in at.selectbox
        if s.key and s.key.startswith(f"edit_{row[0].id}_") and s.key.endswith("_severity")
    )
    severity.set_value("critical")
    at.form_submit_button[1].click().run()
    assert not errors(at)
    [edited] = query(
        db_url,
        select(SubscriptionRow.min_severity, SubscriptionRow.enabled).where(
            SubscriptionRow.name == "oil-watch"
        ),
    )
    assert edited == ("critical", False)

    at.selectbox(key="sub_pick").set_value("oil-watch").run()
    at.button(key="sub_test").click().run()
    assert "delivered" in at.success[0].value

    at.selectbox(key="sub_pick").set_value("oil-watch").run()
    at.checkbox(key="sub_confirm_delete").check().run()
    at.button(key="sub_delete").click().run()
    assert not errors(at)
    assert not query(db_url, select(SubscriptionRow).where(SubscriptionRow.name == "oil-watch"))


def test_alert_actions_and_muted_alerts_are_not_delivered(make_app, db_url: str) -> None:
    at = open_page(make_app("anna"), "alerts")
    at.button(key="al_ack").click().run()
    at.number_input(key="al_mute_hours").set_value(6)
    at.button(key="al_mute").click().run()
    assert not errors(at)
    [alert] = query(db_url, select(AlertRow).where(AlertRow.status == "open"))
    alert = alert[0]
    assert alert.acknowledged_by == "anna" and alert.muted_by == "anna"
    assert alert.muted_until - alert.acknowledged_at > timedelta(hours=5, minutes=59)

    # the dispatcher fans the alert's pending notification out to nobody while it is muted
    engine = make_engine(db_url)
    try:
        with session_factory(engine).begin() as session:
            fanned = delivery_repo.fan_out(session, now=datetime.now(UTC), limit=10)
        assert fanned.outbox_rows == 1 and fanned.deliveries == 0
        assert not query(db_url, select(DeliveryRow))
    finally:
        engine.dispose()

    at.button(key="al_close").click().run()
    [closed] = query(db_url, select(AlertRow.closed_by, AlertRow.status).where(AlertRow.id == alert.id))
    assert closed == ("anna", "open")  # the analyst's close does not touch the alerter's status
    at.radio(key="al_show").set_value("needs attention").run()
    assert at.info[0].value == "No alerts to show."  # closed: it no longer needs attention


def test_unmuted_alert_is_delivered(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with session_factory(engine).begin() as session:
            fanned = delivery_repo.fan_out(session, now=datetime.now(UTC), limit=10)
        assert fanned.outbox_rows == 1 and fanned.deliveries == 2  # ops-log and energy-desk
    finally:
        engine.dispose()


def test_admin_promotes_and_rolls_back_with_confirmation(make_app, db_url: str, monkeypatch) -> None:
    monkeypatch.setattr(registry, "_verify", lambda *args, **kwargs: None)  # no model files in the seed
    at = open_page(make_app("adam"), "models")
    at.selectbox(key="mv_pick").set_value("v2").run()
    at.text_input(key="mv_reason").input("better recent recall")
    at.button(key="mv_promote").click().run()
    assert "Confirm: promote v2" in at.warning[0].value
    status = dict(query(db_url, select(ModelVersionRow.version, ModelVersionRow.status)))
    assert status["v2"] == "candidate"  # nothing happens before the confirmation
    at.button(key="mv_confirm").click().run()
    assert not errors(at)
    status = dict(query(db_url, select(ModelVersionRow.version, ModelVersionRow.status)))
    assert status == {"v0": "retired", "v1": "retired", "v2": "champion"}
    [note] = query(db_url, select(ModelVersionRow.note).where(ModelVersionRow.version == "v2"))
    assert "promoted by adam: better recent recall" in note[0]

    at.button(key="mv_rollback").click().run()
    at.button(key="mv_cancel").click().run()
    assert dict(query(db_url, select(ModelVersionRow.version, ModelVersionRow.status)))["v2"] == "champion"
    at.button(key="mv_rollback").click().run()
    at.button(key="mv_confirm").click().run()
    assert not errors(at)
    status = dict(query(db_url, select(ModelVersionRow.version, ModelVersionRow.status)))
    assert status["v1"] == "champion" and status["v2"] == "rejected"


def test_rollback_refuses_when_the_champion_changed_after_the_confirmation_was_shown(
    make_app, db_url: str, monkeypatch
) -> None:
    monkeypatch.setattr(registry, "_verify", lambda *args, **kwargs: None)
    at = open_page(make_app("adam"), "models")
    at.button(key="mv_rollback").click().run()
    assert "Confirm: roll back v1" in at.warning[0].value
    # meanwhile someone else (the retrainer, another admin) promotes v2
    engine = make_engine(db_url)
    try:
        with session_factory(engine).begin() as session:
            registry.promote(session, "v2", by="retrainer", reason="gate passed", now=datetime.now(UTC))
    finally:
        engine.dispose()
    at.button(key="mv_confirm").click().run()
    [error] = [e.value for e in at.error]
    assert "the champion is now v2, not v1" in error and "\n" not in error
    status = dict(query(db_url, select(ModelVersionRow.version, ModelVersionRow.status)))
    assert status == {"v0": "retired", "v1": "retired", "v2": "champion"}  # v2 was not rejected

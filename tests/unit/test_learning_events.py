"""Model events as JSON: the round trip, and a clear error for every malformed message."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.learning.events import ModelEvent, ModelEventError

SHA = "ab" * 32
EVENT = ModelEvent(
    "promoted", "20260201-080000-1a2b3c4d", "/models/v2", SHA, datetime(2026, 2, 1, 8, tzinfo=UTC)
)


def test_round_trip_and_wire_format() -> None:
    raw = EVENT.to_json()
    assert json.loads(raw) == {
        "kind": "promoted",
        "version": "20260201-080000-1a2b3c4d",
        "path": "/models/v2",
        "sha256": SHA,
        "at": "2026-02-01T08:00:00+00:00",
    }
    assert ModelEvent.from_json(raw) == EVENT
    assert ModelEvent.from_json(raw.decode()) == EVENT


def test_times_are_normalised_to_utc_and_extra_fields_ignored() -> None:
    doc = json.loads(EVENT.to_json())
    doc["at"] = "2026-02-01T09:00:00+01:00"
    doc["by"] = "a newer publisher"
    parsed = ModelEvent.from_json(json.dumps(doc))
    assert parsed == EVENT and parsed.at.tzinfo == UTC
    local = ModelEvent(
        "rollback", "v", "/p", SHA, datetime(2026, 2, 1, 10, tzinfo=timezone(timedelta(hours=2)))
    )
    assert json.loads(local.to_json())["at"] == "2026-02-01T08:00:00+00:00"


def mutate(**changes: object) -> str:
    doc = json.loads(EVENT.to_json())
    for key, value in changes.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "empty model event"),
        (b"\xff\xfe", "not JSON"),
        ("{not json", "not JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        (mutate(version=None, path=None), "lacks version, path"),
        (mutate(kind="deleted"), "unknown model event kind 'deleted'"),
        (mutate(version=""), "field 'version' must be a non-empty string"),
        (mutate(path=7), "field 'path' must be a non-empty string, got 7"),
        (mutate(sha256="abc"), "sha256 'abc' is not 64 lowercase hex digits"),
        (mutate(at="yesterday"), "time 'yesterday' is not an ISO 8601 timestamp"),
        (mutate(at="2026-02-01T08:00:00"), "has no time zone"),
    ],
)
def test_malformed_messages_raise_a_clear_error(raw: bytes | str | None, message: str) -> None:
    with pytest.raises(ModelEventError) as info:
        ModelEvent.from_json(raw)
    assert message in str(info.value), str(info.value)

"""score_batch on the tiny fine-tuned model: valid records scored, bad ones dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bert_core import Prediction, Predictor
from services.schemas import DEFAULT_WATCHLIST
from services.scorer import BatchResult, DeadLetter, RawRecord, dead_letter_headers, score_batch

RECEIVED = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
SCORED_AT = datetime(2025, 3, 4, 12, 0, 1, tzinfo=UTC)
HEADLINES = [
    "apple shares surge after earnings beats estimates",
    "oil prices plunge as opec output rises",
    "fed holds rates steady as inflation cools",
    "tesla stock drops on weak revenue",
]


@pytest.fixture(scope="module")
def predictor(saved_model_dir: Path) -> Predictor:
    return Predictor.load(saved_model_dir)


def record(value: bytes | None, offset: int, *, partition: int = 0, topic: str = "news.raw") -> RawRecord:
    return RawRecord(
        topic, partition, offset, key=b"k%d" % offset, value=value, timestamp_ms=1_700_000 + offset
    )


def message(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def valid_records(start: int = 0) -> list[RawRecord]:
    return [
        record(message(id=f"e{i}", headline=h, source="test"), start + i) for i, h in enumerate(HEADLINES)
    ]


def run(records: Sequence[RawRecord], predictor: Any) -> BatchResult:
    return score_batch(
        records,
        predictor=predictor,
        received_at=RECEIVED,
        watchlist=DEFAULT_WATCHLIST,
        clock=lambda: SCORED_AT,
    )


class CountingPredictor:
    """The real Predictor, recording each call's texts."""

    def __init__(self, inner: Predictor) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.calls.append(list(texts))
        return self.inner.predict(texts)


def test_valid_records_are_scored_in_one_call(predictor: Predictor) -> None:
    counting = CountingPredictor(predictor)
    result = run(valid_records(start=10), counting)

    assert result.dead == [] and result.duplicates == 0
    assert counting.calls == [HEADLINES]  # one model call for the whole batch
    assert [s.event_id for s in result.scored] == ["e0", "e1", "e2", "e3"]
    expected = predictor.predict(HEADLINES)
    for item, pred, offset in zip(result.scored, expected, range(10, 14), strict=True):
        assert item.model_version == predictor.version
        assert (item.topic, item.sentiment) == (pred.topic, pred.sentiment)
        assert item.sentiment_score == pytest.approx(pred.sentiment_score, abs=1e-5)
        assert item.p_bullish - item.p_bearish == pytest.approx(item.sentiment_score, abs=1e-5)
        assert item.p_bearish + item.p_neutral + item.p_bullish == pytest.approx(1.0, abs=1e-5)
        assert (item.kafka_partition, item.kafka_offset) == (0, offset)
        assert item.scored_at == SCORED_AT
        assert item.published_at == RECEIVED  # no published_at in the message
        assert item.source == "test"


def test_fields_and_tickers_carried_over(predictor: Predictor) -> None:
    value = message(
        headline="$AAPL surges after earnings",
        published_at="2025-03-04T06:30:00-05:00",
        url="https://example.com/a",
        region="us",
    )
    [item] = run([record(value, 0)], predictor).scored
    assert item.event_id.startswith("h:")  # derived: no id in the message
    assert item.tickers == ("AAPL",)
    assert item.published_at == datetime(2025, 3, 4, 11, 30, tzinfo=UTC)
    assert item.received_at == RECEIVED
    assert item.extra == {"region": "us"}
    assert item.url == "https://example.com/a"


BAD = {
    "bad json": (b'{"headline": "x",', "invalid_json"),
    "no value": (None, "invalid_json"),
    "missing headline": (message(id="m1", body="no headline here"), "missing_headline"),
    "headline wrong type": (message(id="m2", headline=42), "wrong_type"),
    "tickers wrong type": (message(id="m3", headline="apple surges", tickers="AAPL"), "wrong_type"),
    "not an object": (b"[1, 2]", "wrong_type"),
    "non utf-8": (b'{"headline": "caf\xe9 surges"}', "invalid_utf8"),
    "5 MB body": (message(id="m4", headline="apple surges", body="x" * 5_000_000), "too_large"),
}


def test_malformed_records_go_to_dead_letters_and_the_rest_are_scored(predictor: Predictor) -> None:
    good = valid_records()
    bad = [record(value, 100 + i, partition=3) for i, (value, _) in enumerate(BAD.values())]
    mixed = [good[0], *bad[:4], good[1], good[2], *bad[4:], good[3]]

    result = run(mixed, predictor)

    assert [s.event_id for s in result.scored] == ["e0", "e1", "e2", "e3"]
    assert [d.record for d in result.dead] == bad  # in input order, records unchanged
    assert [d.error_type for d in result.dead] == [kind for _, kind in BAD.values()]
    assert {d.error_class for d in result.dead} == {"InvalidMessage"}
    assert all(d.reason and "\n" not in d.reason for d in result.dead)
    non_utf8 = result.dead[list(BAD).index("non utf-8")]
    assert non_utf8.record.value == b'{"headline": "caf\xe9 surges"}'  # original bytes kept for the DLQ
    assert "UTF-8" in non_utf8.reason


def test_a_published_at_without_a_utc_time_is_a_dead_letter_not_a_failed_batch() -> None:
    """One such record used to raise OverflowError out of the batch: the worker exited
    unacked and met it again after every restart, stalling its partition for good."""

    class NoModel:
        def predict(self, texts: Sequence[str]) -> list[Prediction]:
            raise AssertionError("the model must not be called")

    poison = record(message(headline=HEADLINES[0], published_at="0001-01-01T00:00:00+14:00"), 0)
    result = run([poison], NoModel())
    assert result.scored == [] and [d.error_type for d in result.dead] == ["invalid_timestamp"]


def test_duplicate_event_ids_in_a_batch_are_scored_once(predictor: Predictor) -> None:
    counting = CountingPredictor(predictor)
    first = record(message(id="dup", headline=HEADLINES[0]), 0)
    again = record(message(id="dup", headline=HEADLINES[0]), 1)
    derived = record(message(headline=HEADLINES[1], source="wire"), 2)
    derived_again = record(message(headline=HEADLINES[1], source="wire"), 3)

    result = run([first, again, derived, derived_again], counting)

    assert [(s.kafka_offset) for s in result.scored] == [0, 2]  # the first sighting wins
    assert len({s.event_id for s in result.scored}) == 2
    assert result.duplicates == 2 and result.dead == []
    assert counting.calls == [[HEADLINES[0], HEADLINES[1]]]


def test_empty_and_all_invalid_batches_do_not_call_the_model() -> None:
    class NoModel:
        def predict(self, texts: Sequence[str]) -> list[Prediction]:
            raise AssertionError("the model must not be called")

    assert run([], NoModel()) == BatchResult()
    result = run([record(b"nope", 0)], NoModel())
    assert result.scored == [] and [d.error_type for d in result.dead] == ["invalid_json"]


class FailsWhenBatchedWith:
    """The real Predictor, except that a batch containing `poison` raises, and so does
    `poison` on its own: as a model that chokes on one input would behave."""

    def __init__(self, inner: Predictor, poison: str) -> None:
        self.inner = inner
        self.poison = poison
        self.calls = 0

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.calls += 1
        if self.poison in texts:
            raise RuntimeError(f"cannot score {self.poison!r}\n(second line)")
        return self.inner.predict(texts)


def test_batch_failure_falls_back_to_items_and_dead_letters_only_the_culprit(predictor: Predictor) -> None:
    records = valid_records()
    wrapper = FailsWhenBatchedWith(predictor, poison=HEADLINES[2])

    result = run(records, wrapper)

    assert wrapper.calls == 1 + len(HEADLINES)  # the batch, then each item alone
    assert [s.event_id for s in result.scored] == ["e0", "e1", "e3"]
    [dead] = result.dead
    assert dead.record == records[2]
    assert (dead.error_class, dead.error_type) == ("RuntimeError", "inference_error")
    assert dead.reason == f"cannot score {HEADLINES[2]!r} (second line)"  # one line
    by_id = {s.event_id: s for s in result.scored}
    alone = predictor.predict([HEADLINES[0]])[0]
    assert by_id["e0"].sentiment_score == pytest.approx(alone.sentiment_score, abs=1e-5)


def test_a_url_only_headline_is_dead_lettered_before_the_model(predictor: Predictor) -> None:
    # A headline that is only a URL would be empty after the model's text normalisation, and
    # the real Predictor would refuse the whole batch (forcing the slow item-by-item path).
    # The schema rejects it first, so the rest of the batch is scored in one call.
    calls: list[int] = []

    class Counting:
        def predict(self, texts: Sequence[str]) -> list[Prediction]:
            calls.append(len(texts))
            return predictor.predict(texts)

    records = [*valid_records(), record(message(id="url-only", headline="https://t.co/abc123"), 9)]

    result = run(records, Counting())

    assert [s.event_id for s in result.scored] == ["e0", "e1", "e2", "e3"]
    assert calls == [4]
    [dead] = result.dead
    assert (dead.record.offset, dead.error_class, dead.error_type) == (
        9,
        "InvalidMessage",
        "missing_headline",
    )
    assert "links" in dead.reason


def test_a_predictor_returning_too_few_predictions_is_an_error(predictor: Predictor) -> None:
    class DropsLast:
        def predict(self, texts: Sequence[str]) -> list[Prediction]:
            out = predictor.predict(texts)
            return out[:-1] if len(texts) > 1 else out

    result = run(valid_records(), DropsLast())
    assert len(result.scored) == len(HEADLINES) and result.dead == []  # recovered item by item


def test_dead_letter_headers() -> None:
    raw = RawRecord("news.raw", 7, 123_456, key=None, value=b"\xff\xfe", timestamp_ms=1_700_000_000_000)
    long_reason = "message is not valid UTF-8 " + "é" * 5_000
    headers = dead_letter_headers(DeadLetter(raw, "InvalidMessage", "invalid_utf8", long_reason))

    as_dict = dict(headers)
    assert len(as_dict) == len(headers)  # no repeated names
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in headers)
    assert as_dict["source-topic"] == b"news.raw"
    assert as_dict["source-partition"] == b"7"
    assert as_dict["source-offset"] == b"123456"
    assert as_dict["source-timestamp-ms"] == b"1700000000000"
    assert as_dict["error-class"] == b"InvalidMessage"
    assert as_dict["error-type"] == b"invalid_utf8"
    message_text = as_dict["error-message"].decode("utf-8")
    assert len(message_text) == 1_000 and message_text.startswith("message is not valid UTF-8")
    assert message_text.endswith("…")

    short = dict(dead_letter_headers(DeadLetter(raw, "DataError", "inference_error", "text 0 is empty")))
    assert short["error-message"] == b"text 0 is empty"
    no_ts = RawRecord("t", 0, 1, key=None, value=None)
    assert "source-timestamp-ms" not in dict(dead_letter_headers(DeadLetter(no_ts, "X", "y", "z")))


def test_dead_letters_of_a_batch_have_headers_that_locate_them(predictor: Predictor) -> None:
    bad = record(b"{oops", 41, partition=2, topic="news.raw-test")
    [dead] = run([*valid_records(), bad], predictor).dead
    headers = dict(dead_letter_headers(dead))
    assert headers["source-topic"] == b"news.raw-test"
    assert (headers["source-partition"], headers["source-offset"]) == (b"2", b"41")
    assert headers["error-type"] == b"invalid_json"
    assert headers["error-message"].startswith(b"message is not valid JSON")
    assert dead.record.value == b"{oops" and dead.record.key == b"k41"


def test_queued_slices_score_as_one_predict_call_does(saved_model_dir: Path) -> None:
    """The worker queues a slice's passes (`start_predict_items`) and collects them later;
    with the real Predictor on two pass threads that gives exactly the one-call result."""
    from services.scorer import parse_batch, predict_items, start_predict_items

    parallel = Predictor.load(saved_model_dir, threads=2, parallel_passes=2)
    parsed = parse_batch(valid_records(), received_at=RECEIVED, watchlist=DEFAULT_WATCHLIST)
    pending = start_predict_items(parsed.valid, predictor=parallel)
    assert pending.done is not None
    queued = pending.finish(clock=lambda: SCORED_AT)
    direct = predict_items(parsed.valid, predictor=parallel, clock=lambda: SCORED_AT)
    assert queued == direct and len(queued.scored) == len(HEADLINES)


def test_a_slice_whose_queued_passes_fail_is_scored_item_by_item(predictor: Predictor) -> None:
    from services.scorer import parse_batch, start_predict_items

    class FailsWhenCollected:
        """`submit` queues fine, collecting the batch fails; items alone work."""

        def __init__(self) -> None:
            self.alone: list[str] = []

        def submit(self, texts: Sequence[str]) -> Any:
            class Broken:
                def result(self) -> list[Prediction]:
                    raise RuntimeError("a pass failed")

            return Broken()

        def predict(self, texts: Sequence[str]) -> list[Prediction]:
            self.alone.extend(texts)
            return predictor.predict(texts)

    wrapper = FailsWhenCollected()
    parsed = parse_batch(valid_records(), received_at=RECEIVED, watchlist=DEFAULT_WATCHLIST)
    result = start_predict_items(parsed.valid, predictor=wrapper).finish(clock=lambda: SCORED_AT)
    assert wrapper.alone == HEADLINES
    assert [s.event_id for s in result.scored] == ["e0", "e1", "e2", "e3"] and result.dead == []


def test_a_slice_whose_submit_fails_is_scored_item_by_item(predictor: Predictor) -> None:
    from services.scorer import parse_batch, start_predict_items

    class SubmitFails:
        def submit(self, texts: Sequence[str]) -> Any:
            raise RuntimeError("cannot queue")

        def predict(self, texts: Sequence[str]) -> list[Prediction]:
            return predictor.predict(texts)

    parsed = parse_batch(valid_records(), received_at=RECEIVED, watchlist=DEFAULT_WATCHLIST)
    result = start_predict_items(parsed.valid, predictor=SubmitFails()).finish(clock=lambda: SCORED_AT)
    assert [s.event_id for s in result.scored] == ["e0", "e1", "e2", "e3"] and result.dead == []


def test_start_slices_starts_all_with_pass_threads_and_one_at_a_time_without(
    saved_model_dir: Path, predictor: Predictor
) -> None:
    """With pass threads every slice is queued in one call; a predictor that scores inside
    `submit` gets one slice per call, so the worker can store it while the next is scored."""
    from services.scorer import parse_batch
    from services.scorer.batch import start_slices

    parsed = parse_batch(valid_records(), received_at=RECEIVED, watchlist=DEFAULT_WATCHLIST)
    slices = [parsed.valid[:2], parsed.valid[2:]]
    assert len(start_slices(slices, predictor=predictor)) == 1  # parallel_passes=1: scored in submit

    class Queued:
        """Passes that never finish on their own: every slice counts as still running."""

        def submit(self, texts: Sequence[str]) -> Any:
            from concurrent.futures import Future

            class Pending:
                done: Future[None] = Future()

                def result(self) -> list[Prediction]:
                    return predictor.predict(texts)

            return Pending()

        def predict(self, texts: Sequence[str]) -> list[Prediction]:
            return predictor.predict(texts)

    started = start_slices(slices, predictor=Queued())
    assert len(started) == 2
    assert [s.event_id for s in started[1].finish(clock=lambda: SCORED_AT).scored] == ["e2", "e3"]


def test_items_dated_beyond_the_future_skew_are_dead_lettered_before_the_model() -> None:
    from datetime import timedelta

    from services.scorer import parse_batch

    records = [
        record(message(id="ok", headline="acme beats", published_at=RECEIVED.isoformat()), 0),
        record(message(id="2099", headline="acme beats", published_at="2099-01-01T00:00:00Z"), 1),
        record(
            message(
                id="soon", headline="acme beats", published_at=(RECEIVED + timedelta(hours=5)).isoformat()
            ),
            2,
        ),
    ]
    parsed = parse_batch(records, received_at=RECEIVED, watchlist=DEFAULT_WATCHLIST)
    assert [item.event_id for _, item in parsed.valid] == ["ok"]
    assert [(d.record.offset, d.error_type) for d in parsed.dead] == [
        (1, "future_published_at"),
        (2, "future_published_at"),
    ]
    wider = parse_batch(
        records, received_at=RECEIVED, watchlist=DEFAULT_WATCHLIST, max_future_skew=timedelta(hours=6)
    )
    assert [item.event_id for _, item in wider.valid] == ["ok", "soon"]

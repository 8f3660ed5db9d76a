"""LabelSet: tolerant lookup of class ids and names."""

from __future__ import annotations

import pytest

from bert_core import SENTIMENT_LABELS, TOPIC_LABELS, DataError, LabelSet


@pytest.fixture()
def sentiment() -> LabelSet:
    return LabelSet("sentiment", SENTIMENT_LABELS)


@pytest.fixture()
def topic() -> LabelSet:
    return LabelSet("topic", TOPIC_LABELS)


def test_default_label_sets_match_the_dataset_ids(sentiment: LabelSet, topic: LabelSet) -> None:
    assert sentiment.names == ("bearish", "bullish", "neutral")
    assert len(sentiment) == 3
    assert len(topic) == 20
    assert topic.names[1] == "Fed / Central Banks"
    assert topic.names[19] == "Stock Movement"


def test_integer_ids(sentiment: LabelSet, topic: LabelSet) -> None:
    assert [sentiment.to_id(i) for i in (0, 1, 2)] == [0, 1, 2]
    assert topic.to_id(19) == 19
    assert sentiment.to_id(2.0) == 2  # parquet/JSON may carry ids as floats


def test_digit_strings(sentiment: LabelSet, topic: LabelSet) -> None:
    assert sentiment.to_id("0") == 0
    assert sentiment.to_id(" 2 ") == 2
    assert topic.to_id("13") == 13


def test_names_are_case_insensitive(sentiment: LabelSet, topic: LabelSet) -> None:
    assert sentiment.to_id("bearish") == 0
    assert sentiment.to_id("BULLISH") == 1
    assert sentiment.to_id(" Neutral ") == 2
    assert topic.to_id("energy / oil") == 6
    assert topic.to_id("M&A / INVESTMENTS") == 13


def test_pipe_and_slash_spellings_are_one_label(topic: LabelSet) -> None:
    assert topic.to_id("Fed | Central Banks") == topic.to_id("Fed / Central Banks") == 1
    assert topic.to_id("fed/central banks") == 1
    assert topic.to_id("Gold | Metals | Materials") == 10


def test_unknown_label_lists_the_choices(sentiment: LabelSet) -> None:
    with pytest.raises(DataError) as info:
        sentiment.to_id("positive")
    message = str(info.value)
    assert "positive" in message
    assert "sentiment" in message
    for name in SENTIMENT_LABELS:
        assert name in message
    assert "0-2" in message


@pytest.mark.parametrize("value", [3, -1, "3", "-1", 99])
def test_out_of_range_id(sentiment: LabelSet, value: object) -> None:
    with pytest.raises(DataError, match="out of range 0-2"):
        sentiment.to_id(value)


def test_topic_id_20_is_out_of_range(topic: LabelSet) -> None:
    with pytest.raises(DataError, match="out of range 0-19"):
        topic.to_id("20")


def test_bool_is_not_an_id(sentiment: LabelSet) -> None:
    with pytest.raises(DataError):
        sentiment.to_id(True)


def test_label_set_needs_two_distinct_names() -> None:
    with pytest.raises(DataError, match="at least two"):
        LabelSet("x", ["only"])
    with pytest.raises(DataError, match="duplicate"):
        LabelSet("x", ["A / B", "a | b"])

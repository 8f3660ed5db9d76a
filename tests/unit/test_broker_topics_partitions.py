"""Planning `finsent topics scale`: which topics grow, which are refused, and why."""

from __future__ import annotations

import pytest

from services.broker import PartitionChange, plan_partitions, refusal, scalable_topics
from services.broker.topics import partition_errors
from services.settings import Settings


def test_scale_touches_the_worker_topics_only() -> None:
    settings = Settings(topic_news_raw="raw-x", topic_news_scored="scored-x")  # type: ignore[call-arg]
    assert scalable_topics(settings) == ["raw-x", "scored-x"]


def test_plan_grows_leaves_refuses_and_finds_missing() -> None:
    changes = plan_partitions({"a": 2, "b": 4, "c": 8, "d": None}, 4)
    assert [(c.name, c.before, c.action) for c in changes] == [
        ("a", 2, "grow"),
        ("b", 4, "unchanged"),
        ("c", 8, "shrink"),
        ("d", None, "missing"),
    ]


def test_plan_needs_at_least_one_partition() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_partitions({"a": 2}, 0)


def test_refusal_names_the_shrinking_topics_in_one_line() -> None:
    line = refusal([PartitionChange("raw", 8, 4), PartitionChange("scored", 2, 4)], "k:9092")
    assert line is not None and "\n" not in line
    assert "cannot shrink to 4 partition(s): raw has 8" in line and "Kafka cannot remove partitions" in line
    assert "scored" not in line


def test_refusal_sends_a_missing_topic_to_init() -> None:
    line = refusal([PartitionChange("raw", None, 4)], "k:9092")
    assert line == "topic(s) raw do not exist on k:9092; create them with `finsent init`"


def test_growing_and_unchanged_plans_are_accepted() -> None:
    assert refusal([PartitionChange("raw", 2, 4), PartitionChange("scored", 4, 4)], "k:9092") is None


def test_partition_errors_reads_each_result() -> None:
    response = {
        "throttle_time_ms": 0,
        "results": [
            {"name": "raw", "error_code": 0, "error_message": None},
            {"name": "scored", "error_code": 37, "error_message": "Number of partitions is invalid."},
        ],
    }
    assert partition_errors(response) == [
        ("raw", 0, None),
        ("scored", 37, "Number of partitions is invalid."),
    ]

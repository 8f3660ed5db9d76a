"""Structured logging: key=value on a terminal, JSON lines in production.

Standard-library loggers carry their fields in `extra` (`log.info("...", extra={...})`):
`ExtraAdder` turns them into key=value pairs or JSON keys like structlog's own.
"""

from __future__ import annotations

import logging
import re
import sys

import structlog

# faust (and its service library mode) log every service's start and stop, and every late
# timer, at INFO: ~50 lines per worker start and stop that bury the worker's own lines.
# The faust subclasses in services.scorer.transport log their lifecycle under their own module name.
_FRAMEWORKS = ("faust.", "mode.", "aiokafka.", "services.scorer.probe_server", "services.scorer.transport")
_CHATTER = re.compile(r"^\[\^.*\]: (Starting|Stopping)\.\.\.$|^Timer \S+ woke up too late")


class FrameworkChatter(logging.Filter):
    """Drops the faust/mode lifecycle chatter at INFO and below; keeps everything else
    (assignments, "Worker ready", signals, warnings)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not record.name.startswith(_FRAMEWORKS):
            return True
        return _CHATTER.search(record.getMessage()) is None


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if root.level > logging.DEBUG:
        handler.addFilter(FrameworkChatter())
    for noisy in ("transformers", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # kafka-python logs every connection attempt, and every refused one at ERROR; the services
    # report broker failures themselves, in one line. FINSENT_LOG_LEVEL=DEBUG shows it all.
    logging.getLogger("kafka").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.CRITICAL)

"""The log channel: one structured line per message, to a named logger or to stdout.

For development, for a log pipeline that already routes alerts, and as the channel that
cannot fail: it needs no network, so a delivery to it is the dispatcher's own smoke test.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO

from services.delivery import render
from services.delivery.channels.base import SendResult, one_line
from services.delivery.model import Message
from services.delivery.subscriptions import STDOUT_TARGET


class LogChannel:
    name = "log"

    def __init__(self, target: str, *, stream: TextIO | None = None) -> None:
        self.target = target
        self._stream = stream

    def describe(self) -> str:
        return f"log {self.target}"

    def send(self, message: Message) -> SendResult:
        fields = render.log_fields(message)
        try:
            if self.target == STDOUT_TARGET:
                stream = self._stream or sys.stdout
                stream.write(json.dumps({"event": "finsent alert", **fields}, ensure_ascii=False) + "\n")
                stream.flush()
            else:
                logging.getLogger(self.target).warning(render.message_title(message), extra=fields)
        except (OSError, ValueError) as exc:  # a closed or broken stdout
            return SendResult("retry", None, one_line(f"{type(exc).__name__}: {exc}"))
        return SendResult("delivered")

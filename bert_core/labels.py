"""Label sets of the two tasks and lookup of labels given as ids or names.

Ids follow the Twitter Financial News datasets so the seed CSVs load as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from bert_core.errors import DataError

Task = Literal["topic", "sentiment"]
TASKS: Final[tuple[Task, ...]] = ("topic", "sentiment")

SENTIMENT_LABELS: Final[tuple[str, ...]] = ("bearish", "bullish", "neutral")

TOPIC_LABELS: Final[tuple[str, ...]] = (
    "Analyst Update",
    "Fed / Central Banks",
    "Company / Product News",
    "Treasuries / Corporate Debt",
    "Dividend",
    "Earnings",
    "Energy / Oil",
    "Financials",
    "Currencies",
    "General News / Opinion",
    "Gold / Metals / Materials",
    "IPO",
    "Legal / Regulation",
    "M&A / Investments",
    "Macro",
    "Markets",
    "Politics",
    "Personnel Change",
    "Stock Commentary",
    "Stock Movement",
)

DEFAULT_LABELS: Final[dict[Task, tuple[str, ...]]] = {
    "topic": TOPIC_LABELS,
    "sentiment": SENTIMENT_LABELS,
}


def _name_key(name: str) -> str:
    # "Fed | Central Banks", "fed / central banks" and "Fed/Central Banks" are one label.
    return "".join(name.lower().replace("|", "/").split())


class LabelSet:
    """An ordered list of class names with tolerant lookup by id or name."""

    def __init__(self, task: str, names: Sequence[str]) -> None:
        if len(names) < 2:
            raise DataError(f"task {task!r} needs at least two labels, got {len(names)}")
        self.task = task
        self.names: tuple[str, ...] = tuple(names)
        self._by_key = {_name_key(n): i for i, n in enumerate(self.names)}
        if len(self._by_key) != len(self.names):
            raise DataError(f"task {task!r} has duplicate label names: {list(self.names)}")

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"LabelSet({self.task!r}, {list(self.names)!r})"

    def to_id(self, value: object) -> int:
        """Map an integer id, a digit string or a name to the class id."""
        if isinstance(value, bool):
            raise DataError(f"{self.task} label {value!r} is not an id or a name")
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            idx = int(value)
        else:
            text = str(value).strip()
            if text.lstrip("-").isdigit():
                idx = int(text)
            else:
                key = _name_key(text)
                if key not in self._by_key:
                    raise DataError(
                        f"unknown {self.task} label {text!r}; expected an id 0-{len(self) - 1} "
                        f"or one of: {', '.join(self.names)}"
                    )
                return self._by_key[key]
        if not 0 <= idx < len(self):
            raise DataError(f"{self.task} label id {idx} is out of range 0-{len(self) - 1}")
        return idx

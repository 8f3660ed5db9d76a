"""The labelled seed data that ships with finsent: real finance headlines with human topic and
sentiment labels (Twitter Financial News, MIT; README.md and LICENSE beside this file).

It is package data rather than a folder next to the checkout, so that an installed finsent
(a wheel, not only a source tree) can train its bootstrap model, freeze its holdout and replay
its demo with nothing else on disk. FINSENT_SENTIMENT_DATA / FINSENT_TOPIC_DATA still point
elsewhere when an operator has better data; these files are only their defaults.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from bert_core.errors import DataError
from bert_core.labels import Task

SEED_FILES: Final[dict[Task, str]] = {"sentiment": "sentiment_train.csv", "topic": "topic_train.csv"}


def packaged_seed_data() -> dict[Task, Path]:
    """Task -> the packaged seed CSV (`text,label`), as a real file path.

    Settings and the training recipes need a path on disk (pandas, file hashes in manifests),
    so a package imported from a zip archive, where the files have no path, is refused with
    a clear error instead of being extracted to a temporary copy behind the caller's back.
    """
    folder = files(__name__)
    if not isinstance(folder, Path):
        raise DataError(
            f"the packaged seed data ({folder}) is not on the file system; "
            "set FINSENT_SENTIMENT_DATA and FINSENT_TOPIC_DATA to the CSV files"
        )
    return {task: folder / name for task, name in SEED_FILES.items()}


__all__ = ["SEED_FILES", "packaged_seed_data"]

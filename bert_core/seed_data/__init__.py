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
# A teacher's soft targets for the seed files' training split (bert_core.soft_targets),
# computed by a trained MPNet-base teacher (README.md beside this file: how to remake it).
SOFT_TARGETS_FILE: Final = "soft_targets.npz"


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


def packaged_soft_targets() -> Path:
    """Where the shipped soft-targets file is (or would be): beside the seed files, so a
    default `finsent train` on them distils from it when it exists and matches them."""
    return packaged_seed_data()["sentiment"].parent / SOFT_TARGETS_FILE


def soft_targets_choice(explicit: Path | None, *, shipped: bool, teachers: bool) -> tuple[str | None, bool]:
    """The soft-targets file of a run and whether it is optional: an explicit file (must
    match); else, unless teacher models are given or the shipped file is turned off, the file
    shipped beside the seed data (used only where it exists and matches the training files).
    `finsent train` and the background upgrade both choose with it."""
    if explicit is not None:
        return str(explicit), False
    if teachers or not shipped:
        return None, False
    return str(packaged_soft_targets()), True


__all__ = [
    "SEED_FILES",
    "SOFT_TARGETS_FILE",
    "packaged_seed_data",
    "packaged_soft_targets",
    "soft_targets_choice",
]

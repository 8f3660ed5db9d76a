"""The pure part of retention: the cutoff, and the bounds a prune refuses to go past."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine

from services.storage import prune_older, retention_cutoff
from services.storage.retention import MAX_BATCH


def test_cutoff_is_days_before_now() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert retention_cutoff(now, 30) == datetime(2026, 11, 6, 12, 0, tzinfo=UTC)
    assert retention_cutoff(now, 1.5) == datetime(2026, 12, 5, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("days", [0, -1])
def test_cutoff_needs_a_positive_age(days: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        retention_cutoff(datetime(2026, 12, 6, tzinfo=UTC), days)


@pytest.mark.parametrize("size", [0, MAX_BATCH + 1])
def test_batch_size_is_bounded(size: int) -> None:
    engine = create_engine("sqlite://")  # never reached: the bound is checked first
    with pytest.raises(ValueError, match="batch_size"):
        prune_older(engine, datetime(2026, 1, 1, tzinfo=UTC), batch_size=size)

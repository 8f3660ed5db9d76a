"""Reads of stories (no datasketch, no clustering: the alerter and the dashboard import this).

An item without a `story_members` row (stored with clustering off, or before it existed)
is a story of its own: every read uses COALESCE(story_id, event_id) and a size of 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from services.storage.models import NewsItemRow
from services.storage.story_models import StoryMemberRow

MEMBERS = cast(Table, StoryMemberRow.__table__)
NEWS = cast(Table, NewsItemRow.__table__)
CHUNK: Final = 500


@dataclass(frozen=True, slots=True)
class StorySummary:
    """A story's size (its items, the first included) and the sources that carried it."""

    story_id: str
    items: int
    sources: tuple[str, ...]
    first_published_at: datetime
    last_published_at: datetime

    @property
    def copies(self) -> int:
        """Items beyond the first."""
        return self.items - 1


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(values), CHUNK):
        yield values[i : i + CHUNK]


def story_ids_of(session: Session, event_ids: Iterable[str]) -> dict[str, str]:
    """The story of each item (itself when it has no story row)."""
    ids = sorted(set(event_ids))
    out = {e: e for e in ids}
    for chunk in _chunks(ids):
        stmt = select(MEMBERS.c.event_id, MEMBERS.c.story_id).where(MEMBERS.c.event_id.in_(chunk))
        out.update(dict(session.execute(stmt).tuples().all()))
    return out


def member_times(session: Session, story_ids: Iterable[str]) -> list[datetime]:
    """`published_at` of every item of these stories."""
    ids = sorted(set(story_ids))
    times: list[datetime] = []
    for chunk in _chunks(ids):
        times.extend(session.scalars(select(MEMBERS.c.published_at).where(MEMBERS.c.story_id.in_(chunk))))
    return times


def story_summaries(session: Session, story_ids: Iterable[str]) -> dict[str, StorySummary]:
    """Size, sources and time span of each story (a story without rows: its one item)."""
    ids = sorted(set(story_ids))
    rows: dict[str, list[tuple[str | None, datetime]]] = {}
    for chunk in _chunks(ids):
        stmt = (
            select(MEMBERS.c.story_id, NEWS.c.source, NEWS.c.published_at)
            .join(NEWS, NEWS.c.event_id == MEMBERS.c.event_id)
            .where(MEMBERS.c.story_id.in_(chunk))
        )
        for story_id, source, published_at in session.execute(stmt).tuples():
            rows.setdefault(story_id, []).append((source, published_at))
    missing = [i for i in ids if i not in rows]
    for chunk in _chunks(missing):
        stmt = select(NEWS.c.event_id, NEWS.c.source, NEWS.c.published_at).where(NEWS.c.event_id.in_(chunk))
        for event_id, source, published_at in session.execute(stmt).tuples():
            rows[event_id] = [(source, published_at)]
    return {
        story_id: StorySummary(
            story_id=story_id,
            items=len(members),
            sources=tuple(sorted({s for s, _ in members if s})),
            first_published_at=min(p for _, p in members),
            last_published_at=max(p for _, p in members),
        )
        for story_id, members in rows.items()
    }


def story_count(session: Session) -> int:
    """Distinct stories among the clustered items."""
    return session.scalar(select(func.count(func.distinct(MEMBERS.c.story_id)))) or 0

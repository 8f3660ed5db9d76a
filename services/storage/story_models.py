"""Tables of story clustering (services.stories): which story each item belongs to, and the
LSH band keys its near-duplicate candidates are found by.

`story_members` has one row per clustered item; `story_id` is the `event_id` of the story's
earliest item and `story_published_at` that item's time, both rewritten when a later batch
links two stories (services.stories.clustering). Items stored with clustering off have no
row and count as a story of their own everywhere (`COALESCE(story_id, event_id)`).
`story_bands` holds the item's band keys with its time, so the candidate lookup is one
range scan per key on its primary key (band_key, published_at, event_id). `story_members`
cascades with its news item; `story_bands` is deleted by retention (see StoryBandRow).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from services.storage.models import EVENT_ID, Base

# BIGINT on PostgreSQL; SQLite's INTEGER is 64-bit already.
BAND_KEY = BigInteger()


class StoryMemberRow(Base):
    """One item's story and novelty."""

    __tablename__ = "story_members"
    __table_args__ = (
        Index("ix_story_members_story_id", "story_id"),
        Index("ix_story_members_published_at", "published_at"),
    )

    event_id: Mapped[str] = mapped_column(
        EVENT_ID, ForeignKey("news_items.event_id", ondelete="CASCADE"), primary_key=True
    )
    story_id: Mapped[str] = mapped_column(String(128))
    story_published_at: Mapped[datetime]
    published_at: Mapped[datetime]  # copy of news_items.published_at
    novelty: Mapped[float] = mapped_column(Float)  # 1.0 = first of its story


class StoryBandRow(Base):
    """One LSH band key of an item's headline signature."""

    __tablename__ = "story_bands"
    # The primary key is the lookup's index: one B-tree per row, not a key plus an index
    # (and on SQLite no rowid table besides it).
    __table_args__ = ({"sqlite_with_rowid": False},)

    band_key: Mapped[int] = mapped_column(BAND_KEY, primary_key=True, autoincrement=False)
    published_at: Mapped[datetime] = mapped_column(primary_key=True)
    # No foreign key: its check would cost one news_items lookup per band row, most of the
    # insert on PostgreSQL. Retention deletes the rows with their item (retention.py); a row
    # left behind by another delete is harmless, as candidates are read through
    # story_members, which cascades.
    event_id: Mapped[str] = mapped_column(EVENT_ID, primary_key=True)

"""Tables of story clustering (services.stories): which story each item belongs to, and the
LSH band keys its near-duplicate candidates are found by.

`story_members` has one row per clustered item; `story_id` is the `event_id` of the story's
earliest item and `story_published_at` that item's time, both rewritten when a later batch
links two stories (services.stories.clustering). Items stored with clustering off have no
row and count as a story of their own everywhere (`COALESCE(story_id, event_id)`).
The candidate lookup's index differs by database (two schemas, one model): on PostgreSQL the
item's band keys are an array on its member row (`band_keys`) under a GIN index
(`ix_story_members_band_keys`, made by the migration: one index entry per key, no row per
key, and member and keys in one row read); on SQLite, which has no such index, they are
`story_bands` rows, so the lookup is one range scan per key on its primary key (band_key,
published_at, event_id). The other database's structure stays empty (`band_keys` NULL on
SQLite, no `story_bands` rows on PostgreSQL). An exact copy of a text stored within the
window (same `text_key`) stores no band keys on either: the lookup reaches it through its
text (services.stories.store). Neither table has a foreign key to its news item (each check
cost more than the row's insert); retention deletes both with their items.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Float, Index, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from services.storage.models import EVENT_ID, Base

# BIGINT on PostgreSQL; SQLite's INTEGER is 64-bit already.
BAND_KEY = BigInteger()
# PostgreSQL: BIGINT[] under a GIN index; SQLite (NULL there, its keys are story_bands rows): JSON.
BAND_KEYS = ARRAY(BigInteger()).with_variant(JSON(none_as_null=True), "sqlite")
# Made by the migration, PostgreSQL only (services.storage.migrate.UNMODELLED_INDEXES).
BAND_KEYS_INDEX = "ix_story_members_band_keys"


class StoryMemberRow(Base):
    """One item's story and novelty."""

    __tablename__ = "story_members"
    __table_args__ = (
        Index("ix_story_members_story_id", "story_id"),
        Index("ix_story_members_published_at", "published_at"),
        Index("ix_story_members_text_key", "text_key", "published_at"),
    )

    # No foreign key, as on story_bands: its check was 10 of the 16 ms the server spent
    # inserting a slice's 256 rows (EXPLAIN ANALYZE, PostgreSQL). Retention deletes the rows
    # with their item and then any older row left behind (retention.py); candidates and
    # sources are read joined to news_items.
    event_id: Mapped[str] = mapped_column(EVENT_ID, primary_key=True)
    story_id: Mapped[str] = mapped_column(String(128))
    story_published_at: Mapped[datetime]
    published_at: Mapped[datetime]  # copy of news_items.published_at
    novelty: Mapped[float] = mapped_column(Float)  # 1.0 = first of its story
    # services.stories.text_key of the normalised headline; NULL for items stored before
    # revision 0010 (all of which have their band keys stored) and headlines with no words.
    text_key: Mapped[int | None] = mapped_column(BAND_KEY)
    # PostgreSQL: the LSH band keys (NULL for an exact copy, see the module docstring).
    band_keys: Mapped[list[int] | None] = mapped_column(BAND_KEYS)


class StoryBandRow(Base):
    """One LSH band key of an item's headline signature (SQLite; PostgreSQL stores the keys
    in `story_members.band_keys`)."""

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

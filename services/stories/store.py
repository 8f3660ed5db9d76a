"""Story clustering at write time, in the scorer's storing transaction (SQLAlchemy Core,
bound parameters only; PostgreSQL and SQLite).

Why at write time, in the database: the story of an item must not depend on which worker
stored it or in which order, so every batch has to see every item stored before it. The
scorer's transaction therefore takes one transaction-scoped advisory lock before it writes
(`lock`: PostgreSQL `pg_advisory_xact_lock`), stores its items, and only then reads the
candidates: each batch's lookup sees every batch committed before it, and
`services.stories.clustering` makes the result independent of that order (a story is a
connected group, named after its earliest item). The lock is held from the batch's first
write to its commit, a few milliseconds of the storing step; workers only queue there.
On SQLite the batch's first write takes the database's write lock, which does the same.

The lookup is keyed by LSH band keys (`story_bands`, primary key (band_key, published_at,
event_id)): one range scan per key, bounded by the clustering window around the batch's
times, the keys bound as one value (`_key_in`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Final, TypeVar, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    Table,
    any_,
    bindparam,
    column,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from services.storage.bulk import insert_ignoring_conflicts
from services.storage.leadership import lock_key
from services.storage.models import NewsItemRow
from services.storage.repository import ScoredItem
from services.storage.story_models import StoryBandRow, StoryMemberRow
from services.stories.clustering import ClusterResult, Headline, StoredMember, cluster
from services.stories.normalise import cashtags, normalise_headline, shingles
from services.stories.signature import band_key_matrix, signatures

MEMBERS = cast(Table, StoryMemberRow.__table__)
BANDS = cast(Table, StoryBandRow.__table__)
NEWS = cast(Table, NewsItemRow.__table__)

LOCK_NAME: Final = "finsent-story-clustering"
CHUNK: Final = 500  # bound parameters per IN list: far below SQLite's and libpq's limits

T = TypeVar("T")

# A stored item is read back as a candidate by every batch within the window that shares a
# band key with it (a wire story's copies, for half an hour): normalised once per worker.
_normalised = lru_cache(maxsize=16_384)(normalise_headline)


def _chunks(values: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def to_headlines(items: Sequence[ScoredItem]) -> list[Headline]:
    """Shingles and band keys of new items, signatures computed for the batch at once (no
    band keys for a headline with no words: an empty set has one MinHash, and every such
    item would be every other's candidate)."""
    normalised = [normalise_headline(item.headline) for item in items]
    sets = [shingles(n) for n in normalised]
    keys = band_key_matrix(signatures(sets)).tolist()
    return [
        Headline(item.event_id, item.published_at, sh, tuple(k) if sh else (), cashtags(n))
        for item, n, sh, k in zip(items, normalised, sets, keys, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class StoryClustering:
    """The scorer's story step: `lock` before the batch's first write, `assign` after it."""

    threshold: float
    window: timedelta

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"story similarity threshold must be in (0, 1], not {self.threshold}")
        if self.window < timedelta(0):
            raise ValueError("the story window must not be negative")

    def lock(self, session: Session) -> None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(LOCK_NAME)})

    def assign(self, session: Session, items: Sequence[ScoredItem]) -> ClusterResult:
        """Give the batch's items not clustered yet a story, merge the stories they link,
        lower the novelty of stored copies published after them. Idempotent: a replayed
        item already has its row and is left alone."""
        unique: dict[str, ScoredItem] = {}
        for item in items:
            unique.setdefault(item.event_id, item)
        done = _clustered(session, list(unique))
        new = to_headlines([item for event_id, item in unique.items() if event_id not in done])
        if not new:
            return ClusterResult()
        stored = list(_candidates(session, new, self.window))
        result = cluster(new, stored, threshold=self.threshold, window=self.window)
        _write(session, new, result)
        return result


def _clustered(session: Session, event_ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(event_ids):
        found.update(session.scalars(select(MEMBERS.c.event_id).where(MEMBERS.c.event_id.in_(chunk))))
    return found


def _key_in(session: Session, keys: list[int]) -> ColumnElement[bool]:
    """`band_key` among `keys`, the keys bound as one value (an array on PostgreSQL, a JSON
    array read by `json_each` on SQLite) rather than an IN list of thousands of parameters,
    whose per-parameter processing cost more than the lookup itself."""
    if session.get_bind().dialect.name == "postgresql":
        return BANDS.c.band_key == any_(bindparam("band_keys", keys, type_=ARRAY(BigInteger())))
    listed = select(column("value", BigInteger())).select_from(
        func.json_each(bindparam("band_keys", json.dumps(keys), type_=String()))
    )
    return BANDS.c.band_key.in_(listed.scalar_subquery())


def _candidates(session: Session, new: Sequence[Headline], window: timedelta) -> Iterable[StoredMember]:
    """Stored items sharing a band key with a new item, published within `window` of the
    batch; each with the keys it matched on (the only ones the clustering looks up)."""
    keys = sorted({k for h in new for k in h.band_keys})
    if not keys:
        return []
    lo = min(h.published_at for h in new) - window
    hi = max(h.published_at for h in new) + window
    matched: dict[str, set[int]] = {}
    stmt = select(BANDS.c.event_id, BANDS.c.band_key).where(
        _key_in(session, keys), BANDS.c.published_at >= lo, BANDS.c.published_at <= hi
    )
    for event_id, key in session.execute(stmt).tuples():
        matched.setdefault(event_id, set()).add(int(key))
    members: list[StoredMember] = []
    ids = sorted(matched)
    for id_chunk in _chunks(ids):
        stmt = (
            select(
                MEMBERS.c.event_id,
                MEMBERS.c.story_id,
                MEMBERS.c.story_published_at,
                MEMBERS.c.novelty,
                NEWS.c.headline,
                NEWS.c.published_at,
            )
            .join(NEWS, NEWS.c.event_id == MEMBERS.c.event_id)
            .where(MEMBERS.c.event_id.in_(id_chunk))
        )
        Row = tuple[str, str, datetime, float, str, datetime]
        rows = cast(list[Row], session.execute(stmt).tuples().all())
        for event_id, story_id, story_published_at, novelty, headline, published_at in rows:
            normalised = _normalised(headline)
            members.append(
                StoredMember(
                    Headline(
                        event_id,
                        published_at,
                        shingles(normalised),
                        tuple(sorted(matched[event_id])),
                        cashtags(normalised),
                    ),
                    story_id=story_id,
                    story_published_at=story_published_at,
                    novelty=float(novelty),
                )
            )
    return members


def _write(session: Session, new: Sequence[Headline], result: ClusterResult) -> None:
    # Merges first: a new item that linked two stored stories is then written straight
    # into the surviving one, and the re-pointing touches only stored rows.
    if result.merged:
        session.execute(
            update(MEMBERS)
            .where(MEMBERS.c.story_id == bindparam("old"))
            .values(story_id=bindparam("new"), story_published_at=bindparam("first")),
            [{"old": old, "new": new_id, "first": first} for old, (new_id, first) in result.merged.items()],
        )
    if result.novelty:
        session.execute(
            update(MEMBERS).where(MEMBERS.c.event_id == bindparam("e")).values(novelty=bindparam("n")),
            [{"e": e, "n": n} for e, n in result.novelty.items()],
        )
    member_rows = [
        {
            "event_id": h.event_id,
            "story_id": result.assigned[h.event_id].story_id,
            "story_published_at": result.assigned[h.event_id].story_published_at,
            "published_at": h.published_at,
            "novelty": result.assigned[h.event_id].novelty,
        }
        for h in new
    ]
    _insert(session, MEMBERS, member_rows, conflict=["event_id"])
    band_rows = [
        {"band_key": key, "published_at": h.published_at, "event_id": h.event_id}
        for h in new
        for key in sorted(set(h.band_keys))
    ]
    _insert(session, BANDS, band_rows, conflict=["band_key", "published_at", "event_id"])


def _insert(session: Session, table: Table, rows: list[dict[str, Any]], *, conflict: list[str]) -> None:
    """INSERT … ON CONFLICT DO NOTHING of many rows: on PostgreSQL one JSON document
    (services.storage.bulk); on SQLite an executemany, which sqlite3 runs in C (measured: a
    slice's 5,000 band rows took 85 ms as multi-row VALUES with RETURNING)."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        for chunk in _chunks(rows, 5_000):
            insert_ignoring_conflicts(session, table, chunk, conflict=conflict, returning="event_id")
        return
    # The values bound as their column types bind them (UTCDateTime: a UTC string), once per
    # distinct value, then handed to sqlite3's executemany as tuples: SQLAlchemy's own
    # executemany spent ~50 µs a row processing parameters.
    columns = list(rows[0])
    processors = {c: table.c[c].type.bind_processor(dialect) for c in columns}
    cache: dict[tuple[str, Any], Any] = {}

    def bound(column: str, value: Any) -> Any:
        process = processors[column]
        if process is None:
            return value
        key = (column, value)
        if key not in cache:
            cache[key] = process(value)
        return cache[key]

    statement = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "  # noqa: S608
        f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    )  # identifiers from the table definition, values bound
    session.connection().exec_driver_sql(
        statement, [tuple(bound(c, row[c]) for c in columns) for row in rows]
    )

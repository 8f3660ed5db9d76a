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

The lookup is keyed by LSH band keys: on PostgreSQL `band_keys && :keys` on the member rows'
arrays (a GIN index), on SQLite one range scan per key of `story_bands` (primary key
(band_key, published_at, event_id)); both bounded by the clustering window around the
batch's times, the keys bound as one value (an array; a JSON array on SQLite).

Exact copies: an item whose normalised text (`text_key`) has a stored carrier of its band keys
within the window stores no band keys (`band_carriers`), and the lookup reaches it through
its text instead. The lookup reads the carriers within two windows of the batch (a copy in
the batch's window has a carrier within one window of it) and then the members of those texts
within the window: the same candidates, with their keys, as if every copy stored its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Final, TypeVar, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Float,
    String,
    Table,
    and_,
    any_,
    bindparam,
    column,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from services.storage.bulk import insert_ignoring_conflicts
from services.storage.leadership import lock_key
from services.storage.models import NewsItemRow
from services.storage.repository import ScoredItem
from services.storage.story_models import StoryBandRow, StoryMemberRow
from services.stories.clustering import ClusterResult, Headline, StoredMember, band_carriers, cluster
from services.stories.normalise import cashtags, normalise_headline, shingles, text_key
from services.stories.signature import band_key_matrix, signatures

MEMBERS = cast(Table, StoryMemberRow.__table__)
BANDS = cast(Table, StoryBandRow.__table__)
NEWS = cast(Table, NewsItemRow.__table__)

LOCK_NAME: Final = "finsent-story-clustering"
CHUNK: Final = 500  # bound parameters per IN list: far below SQLite's and libpq's limits

T = TypeVar("T")


# A stored item is read back as a candidate by every batch within the window that shares a
# band key with it (a wire story's copies, for half an hour): its headline's shingles and
# cashtags computed once per worker.
@lru_cache(maxsize=16_384)
def _features(headline: str) -> tuple[frozenset[str], frozenset[str]]:
    normalised = normalise_headline(headline)
    return shingles(normalised), cashtags(normalised)


def _chunks(values: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def to_headlines(items: Sequence[ScoredItem]) -> list[Headline]:
    """Shingles, band keys and text keys of new items, signatures computed for the batch's
    distinct texts at once (no band keys for a headline with no words: an empty set has one
    MinHash, and every such item would be every other's candidate)."""
    normalised = [normalise_headline(item.headline) for item in items]
    distinct = list(dict.fromkeys(normalised))
    sets = [shingles(n) for n in distinct]
    keys = band_key_matrix(signatures(sets)).tolist()
    by_text = {
        n: (sh, tuple(k) if sh else (), cashtags(n)) for n, sh, k in zip(distinct, sets, keys, strict=True)
    }
    out = []
    for item, n in zip(items, normalised, strict=True):
        sh, k, tags = by_text[n]
        out.append(Headline(item.event_id, item.published_at, sh, k, tags, text_key(n) if sh else None))
    return out


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
        """The writers' lock; on PostgreSQL also seq scans off for the transaction (`_BAND_HITS`)."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(_LOCK, {"key": lock_key(LOCK_NAME)})

    def assign(
        self, session: Session, items: Sequence[ScoredItem], *, all_new: bool = False
    ) -> ClusterResult:
        """Give the batch's items not clustered yet a story, merge the stories they link,
        lower the novelty of stored copies published after them. Idempotent: a replayed
        item already has its row and is left alone. `all_new`: the transaction has just
        inserted every item's news row, so none has a story yet and that is not looked up."""
        unique: dict[str, ScoredItem] = {}
        for item in items:
            unique.setdefault(item.event_id, item)
        done = set() if all_new else _clustered(session, list(unique))
        new = to_headlines([item for event_id, item in unique.items() if event_id not in done])
        if not new:
            return ClusterResult()
        stored, carriers = _candidates(session, new, self.window)
        result = cluster(new, stored, threshold=self.threshold, window=self.window)
        _write(session, new, result, band_carriers(new, carriers, window=self.window))
        return result


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _one_value(session: Session, name: str, values: list[Any], item_type: TypeEngine[Any]) -> Any:
    """`values` bound as one parameter: an array on PostgreSQL; on SQLite a JSON array read
    by `json_each`, as a scalar subquery for IN. Rather than an IN list of thousands of
    parameters, whose per-parameter processing cost more than the lookup itself."""
    if _postgres(session):
        return any_(bindparam(name, values, type_=ARRAY(item_type)))
    listed = select(column("value", item_type)).select_from(
        func.json_each(bindparam(name, json.dumps(values), type_=String()))
    )
    return listed.scalar_subquery()


def _among(session: Session, col: ColumnElement[Any], name: str, values: list[Any]) -> ColumnElement[bool]:
    bound = _one_value(session, name, values, col.type)
    return col == bound if _postgres(session) else col.in_(bound)


def _clustered(session: Session, event_ids: list[str]) -> set[str]:
    stmt = select(MEMBERS.c.event_id).where(_among(session, MEMBERS.c.event_id, "ids", event_ids))
    return set(session.scalars(stmt))


# The candidate lookup must go through the band keys' GIN index, never a scan of the window's
# rows: `&&` against a slice's ~2,500 keys costs ~25,000 comparisons a row, which the planner
# does not count (measured: 133 ms for 3,000 rows by a seq scan, 2.6 ms through the index). So
# the storing transaction runs with seq scans off (every statement in it is an index lookup or
# a bulk insert anyway; `set_config(…, true)` ends with the transaction), and the time bounds
# apply to the index's hits, outside a materialised CTE, so that the planner cannot prefer the
# btree on published_at and filter the window's rows instead.
_LOCK = text("SELECT pg_advisory_xact_lock(:key), set_config('enable_seqscan', 'off', true)")
# One round trip (a loaded machine makes each cost milliseconds): the carriers sharing a key
# within two windows of the batch (`hit`), and the exact copies of their texts within one
# window, which store no keys; each with its story and headline. The copies' texts as one
# array (`= ANY(ARRAY(…))`), so that they are looked up in the (text_key, published_at) index;
# as `IN (SELECT …)` the planner joined the window's rows to them one by one (46 ms).
_LOOKUP = text(
    "WITH hits AS MATERIALIZED (SELECT event_id, published_at, text_key, band_keys FROM story_members "
    "WHERE band_keys && CAST(:keys AS BIGINT[])), "
    "near AS MATERIALIZED (SELECT event_id, text_key FROM hits WHERE published_at BETWEEN :lo2 AND :hi2), "
    "found AS (SELECT event_id, true AS hit FROM near UNION ALL "
    "SELECT m.event_id, false FROM story_members m WHERE m.band_keys IS NULL "
    "AND m.text_key = ANY(ARRAY(SELECT DISTINCT text_key FROM near WHERE text_key IS NOT NULL)) "
    "AND m.published_at BETWEEN :lo AND :hi) "
    "SELECT m.event_id, m.story_id, m.story_published_at, m.novelty, m.text_key, n.headline, "
    "n.published_at, m.band_keys, f.hit FROM found f "
    "JOIN story_members m ON m.event_id = f.event_id JOIN news_items n ON n.event_id = f.event_id"
).columns(
    column("event_id", String()),
    column("story_id", String()),
    column("story_published_at", MEMBERS.c.story_published_at.type),
    column("novelty", Float()),
    column("text_key", BigInteger()),
    column("headline", String()),
    column("published_at", NEWS.c.published_at.type),
    column("band_keys", ARRAY(BigInteger())),
    column("hit", Boolean()),
)

# event_id, story_id, story_published_at, novelty, text_key, headline, published_at
_Row = tuple[str, str, datetime, float, int | None, str, datetime]


@dataclass(frozen=True, slots=True)
class _Hit:
    """A stored carrier of band keys sharing at least one with the batch: the keys it shares."""

    event_id: str
    published_at: datetime
    text_key: int | None
    keys: tuple[int, ...]


def _lookup_postgres(
    session: Session, keys: list[int], lo: datetime, hi: datetime, window: timedelta
) -> tuple[list[_Hit], list[_Row]]:
    wanted = set(keys)
    literal = "{" + ",".join(map(str, keys)) + "}"  # one string: psycopg adapts a list per element
    bounds = {"lo": lo, "hi": hi, "lo2": lo - window, "hi2": hi + window}
    hits: list[_Hit] = []
    rows: list[_Row] = []
    for *row, band, hit in session.execute(_LOOKUP, {"keys": literal, **bounds}).tuples():
        event_id, _, _, _, tk, _, published_at = row
        if hit:
            hits.append(_Hit(event_id, published_at, tk, tuple(sorted(k for k in band if k in wanted))))
        if lo <= published_at <= hi:
            rows.append(cast(_Row, tuple(row)))
    return hits, rows


def _lookup_sqlite(
    session: Session, keys: list[int], lo: datetime, hi: datetime, window: timedelta
) -> tuple[list[_Hit], list[_Row]]:
    matched: dict[str, tuple[datetime, int | None, list[int]]] = {}
    stmt = (
        select(BANDS.c.event_id, BANDS.c.published_at, MEMBERS.c.text_key, BANDS.c.band_key)
        .join(MEMBERS, MEMBERS.c.event_id == BANDS.c.event_id)
        .where(
            _among(session, BANDS.c.band_key, "band_keys", keys),
            BANDS.c.published_at >= lo - window,
            BANDS.c.published_at <= hi + window,
        )
    )
    for event_id, at, tk, key in session.execute(stmt).tuples():
        matched.setdefault(event_id, (at, tk, []))[2].append(int(key))
    hits = [_Hit(e, at, tk, tuple(sorted(k))) for e, (at, tk, k) in matched.items()]
    direct = [h.event_id for h in hits if lo <= h.published_at <= hi]
    texts = sorted({h.text_key for h in hits if h.text_key is not None})
    where = []
    if direct:
        where.append(_among(session, MEMBERS.c.event_id, "ids", direct))
    if texts:
        where.append(
            and_(
                _among(session, MEMBERS.c.text_key, "text_keys", texts),
                MEMBERS.c.published_at >= lo,
                MEMBERS.c.published_at <= hi,
            )
        )
    if not where:
        return hits, []
    stmt = (
        select(
            MEMBERS.c.event_id,
            MEMBERS.c.story_id,
            MEMBERS.c.story_published_at,
            MEMBERS.c.novelty,
            MEMBERS.c.text_key,
            NEWS.c.headline,
            NEWS.c.published_at,
        )
        .join(NEWS, NEWS.c.event_id == MEMBERS.c.event_id)
        .where(or_(*where))
    )
    return hits, cast(list[_Row], session.execute(stmt).tuples().all())


def _candidates(
    session: Session, new: Sequence[Headline], window: timedelta
) -> tuple[list[StoredMember], list[tuple[int, datetime]]]:
    """Stored items sharing a band key with a new item, published within `window` of the
    batch, each with the keys it matched on (the only ones the clustering looks up); and
    the stored carriers of band keys (text_key, published_at) for `band_carriers`."""
    keys = sorted({k for h in new for k in h.band_keys})
    if not keys:
        return [], []
    lo = min(h.published_at for h in new) - window
    hi = max(h.published_at for h in new) + window
    lookup = _lookup_postgres if _postgres(session) else _lookup_sqlite
    hits, rows = lookup(session, keys, lo, hi, window)
    direct = {h.event_id: h.keys for h in hits if lo <= h.published_at <= hi}
    by_text = {h.text_key: h.keys for h in hits if h.text_key is not None}
    carriers = [(h.text_key, h.published_at) for h in hits if h.text_key is not None]
    members: list[StoredMember] = []
    for event_id, story_id, story_published_at, novelty, tk, headline, published_at in rows:
        matched = direct.get(event_id) or (by_text.get(tk, ()) if tk is not None else ())
        sh, tags = _features(headline)
        members.append(
            StoredMember(
                Headline(event_id, published_at, sh, matched, tags, tk),
                story_id=story_id,
                story_published_at=story_published_at,
                novelty=float(novelty),
            )
        )
    return members, carriers


def _write(session: Session, new: Sequence[Headline], result: ClusterResult, carriers: set[str]) -> None:
    # Merges first: a new item that linked two stored stories is then written straight
    # into the surviving one, and the re-pointing touches only stored rows.
    postgres = _postgres(session)
    if result.merged:
        if postgres:  # one statement for all merges (psycopg's executemany is one per row)
            session.execute(
                text(
                    "UPDATE story_members m SET story_id = u.new, story_published_at = u.first "
                    "FROM unnest(CAST(:old AS TEXT[]), CAST(:new AS TEXT[]), CAST(:first AS TIMESTAMPTZ[])) "
                    "AS u(old, new, first) WHERE m.story_id = u.old"
                ),
                {
                    "old": list(result.merged),
                    "new": [new_id for new_id, _ in result.merged.values()],
                    "first": [first for _, first in result.merged.values()],
                },
            )
        else:
            session.execute(
                update(MEMBERS)
                .where(MEMBERS.c.story_id == bindparam("old"))
                .values(story_id=bindparam("new"), story_published_at=bindparam("first")),
                [
                    {"old": old, "new": new_id, "first": first}
                    for old, (new_id, first) in result.merged.items()
                ],
            )
    if result.novelty:
        if postgres:
            session.execute(
                text(
                    "UPDATE story_members m SET novelty = u.n FROM unnest(CAST(:e AS TEXT[]), "
                    "CAST(:n AS DOUBLE PRECISION[])) AS u(e, n) WHERE m.event_id = u.e"
                ),
                {"e": list(result.novelty), "n": list(result.novelty.values())},
            )
        else:
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
            "text_key": h.text_key,
        }
        | ({"band_keys": sorted(set(h.band_keys)) if h.event_id in carriers else None} if postgres else {})
        for h in new
    ]
    _insert(session, MEMBERS, member_rows, conflict=["event_id"])
    if not postgres:
        band_rows = [
            {"band_key": key, "published_at": h.published_at, "event_id": h.event_id}
            for h in new
            if h.event_id in carriers
            for key in sorted(set(h.band_keys))
        ]
        _insert(session, BANDS, band_rows, conflict=["band_key", "published_at", "event_id"])


def _insert(session: Session, table: Table, rows: list[dict[str, Any]], *, conflict: list[str]) -> None:
    """INSERT … ON CONFLICT DO NOTHING of many rows, without RETURNING (nothing is read back):
    on PostgreSQL one JSON document (services.storage.bulk); on SQLite an executemany, which
    sqlite3 runs in C (measured: a slice's 5,000 band rows took 85 ms as multi-row VALUES with
    RETURNING)."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        for chunk in _chunks(rows, 5_000):
            insert_ignoring_conflicts(session, table, chunk, conflict=conflict, returning=None)
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

"""Which story each new item joins: near-duplicate headlines within a time window.

Pure functions, no I/O: `cluster` is handed the new items and the stored items that share
an LSH band key with one of them (`services.stories.store` reads those), and returns what
to write.

A story is a connected group of items, two items being linked when their normalised
headlines have an exact shingle Jaccard similarity of at least `threshold` (`similarity_of`:
none when they name disjoint cashtags) and were
published at most `window` apart. Its `story_id` is the `event_id` of its earliest item by
(published_at, event_id). Both are properties of the *set* of items, not of the order they
arrived in: when a new item links stories stored separately (a copy that arrived late, or
an earlier item arriving after its copies), the stories merge into the one with the
earliest item, and the stored members of the others are re-pointed. So a replay, or
several workers storing items in any interleaving, ends with the same story ids, as long
as each batch sees everything stored before it (the store serialises writers for that).

`novelty` is 1 - the highest similarity to a linked item published earlier; 1.0 for an
item with none, which is the first item of its story (and, rarely, an item that joined
only through a later one). A late earlier item lowers the novelty of its later copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.stories.normalise import jaccard

OrderKey = tuple[datetime, str]


@dataclass(frozen=True, slots=True)
class Headline:
    """One item as clustering sees it: its shingles and LSH band keys."""

    event_id: str
    published_at: datetime
    shingles: frozenset[str]
    band_keys: tuple[int, ...]
    cashtags: frozenset[str] = frozenset()
    text_key: int | None = None  # `normalise.text_key`; None for a headline with no words

    @property
    def order(self) -> OrderKey:
        return (self.published_at, self.event_id)


@dataclass(frozen=True, slots=True)
class StoredMember:
    """An item stored earlier, with the story it belongs to now."""

    headline: Headline
    story_id: str
    story_published_at: datetime
    novelty: float


@dataclass(frozen=True, slots=True)
class Assignment:
    story_id: str
    story_published_at: datetime
    novelty: float
    similarity: float  # to the closest earlier linked item; 0.0 for a story's first item


@dataclass(slots=True)
class ClusterResult:
    """What a batch changes: the new items' stories, stored stories merged into another
    (old story_id -> new story_id and its first item's time), stored items' lower novelty."""

    assigned: dict[str, Assignment] = field(default_factory=dict)
    merged: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    novelty: dict[str, float] = field(default_factory=dict)


def band_carriers(
    new: Sequence[Headline], carriers: Iterable[tuple[int, datetime]], *, window: timedelta
) -> set[str]:
    """The new items whose band keys are stored: those with no stored or earlier-in-batch
    carrier of the same text (`carriers`: (text_key, published_at) of stored items whose keys
    are stored) within `window`. An exact copy stores none, so the lookup's index holds one
    entry per text and window, not per copy; the lookup finds a copy through a carrier of its
    text, which is within `window` of it (`services.stories.store`). Which copy carries
    depends on arrival order; the candidates found, hence the stories, do not."""
    seen: dict[int, list[datetime]] = {}
    for key, at in carriers:
        seen.setdefault(key, []).append(at)
    out: set[str] = set()
    for item in sorted(new, key=lambda h: h.order):
        if item.text_key is None or not item.band_keys:
            continue
        times = seen.setdefault(item.text_key, [])
        if not any(abs(at - item.published_at) <= window for at in times):
            out.add(item.event_id)
            times.append(item.published_at)
    return out


def similarity_of(a: Headline, b: Headline) -> float:
    """Shingle Jaccard similarity, 0.0 when both name companies by cashtag and none is
    common: templated headlines ("$KMPR - Kemper EPS beats by $0.04, beats on revenue",
    "$RPD - Rapid7 EPS beats by $0.04, …") share most word pairs but are distinct stories."""
    if a.cashtags and b.cashtags and not a.cashtags & b.cashtags:
        return 0.0
    return jaccard(a.shingles, b.shingles)


class _Stories:
    """Union-find over story ids; a group's representative is its earliest story."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.first: dict[str, OrderKey] = {}

    def add(self, story_id: str, first: OrderKey) -> None:
        if story_id not in self.parent:
            self.parent[story_id] = story_id
            self.first[story_id] = first

    def find(self, story_id: str) -> str:
        root = story_id
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[story_id] != root:  # path compression
            self.parent[story_id], story_id = root, self.parent[story_id]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.first[rb] < self.first[ra]:
            ra, rb = rb, ra
        self.parent[rb] = ra


def cluster(
    new: Sequence[Headline],
    stored: Iterable[StoredMember],
    *,
    threshold: float,
    window: timedelta,
) -> ClusterResult:
    """Stories of the `new` items (none of them stored yet) given the stored `stored` items
    that share a band key with at least one of them."""
    stories = _Stories()
    # key -> the items holding it, by event_id: an item's candidates are the union of its
    # keys' dicts (dict.update, in C), each once whatever the number of keys it shares.
    by_key: dict[int, dict[str, Headline]] = {}
    novelty: dict[str, float] = {}
    stored_story: dict[str, str] = {}
    for member in stored:
        h = member.headline
        stories.add(member.story_id, (member.story_published_at, member.story_id))
        stored_story[h.event_id] = member.story_id
        novelty[h.event_id] = member.novelty
        for key in h.band_keys:
            by_key.setdefault(key, {})[h.event_id] = h

    result = ClusterResult()
    lowered: dict[str, float] = {}
    best: dict[str, float] = {}
    for item in sorted(new, key=lambda h: h.order):
        stories.add(item.event_id, item.order)
        others: dict[str, Headline] = {}
        for key in item.band_keys:
            bucket = by_key.get(key)
            if bucket:
                others.update(bucket)
        others.pop(item.event_id, None)
        for other in others.values():
            if abs(other.published_at - item.published_at) > window:
                continue
            similarity = similarity_of(item, other)
            if similarity < threshold:
                continue
            stories.union(item.event_id, stored_story.get(other.event_id, other.event_id))
            if other.order < item.order:
                best[item.event_id] = max(best.get(item.event_id, 0.0), similarity)
            elif other.event_id in stored_story:  # a stored item published after this one
                value = min(novelty[other.event_id], 1.0 - similarity)
                if value < novelty[other.event_id]:
                    novelty[other.event_id] = value
                    lowered[other.event_id] = value
        for key in item.band_keys:
            by_key.setdefault(key, {})[item.event_id] = item

    for item in new:
        root = stories.find(item.event_id)
        similarity = best.get(item.event_id, 0.0)
        result.assigned[item.event_id] = Assignment(
            story_id=root,
            story_published_at=stories.first[root][0],
            novelty=1.0 - similarity,
            similarity=similarity,
        )
    for story_id in set(stored_story.values()):
        root = stories.find(story_id)
        if root != story_id:
            result.merged[story_id] = (root, stories.first[root][0])
    result.novelty = lowered
    return result

"""Story clustering's pure parts: normalising, the labelled pairs, order-independent stories."""

from __future__ import annotations

import itertools
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.stories import (
    Headline,
    StoredMember,
    band_carriers,
    band_keys,
    cashtags,
    cluster,
    minhash,
    normalise_headline,
    shingles,
    text_key,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import story_pairs

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def headline(event_id: str, text: str, minutes: float) -> Headline:
    normalised = normalise_headline(text)
    sh = shingles(normalised)
    return Headline(
        event_id, T0 + timedelta(minutes=minutes), sh, tuple(band_keys(minhash(sh))), cashtags(normalised)
    )


@pytest.mark.parametrize(
    "copy",
    [
        "UPDATE 1-Boeing shares fall after FAA orders new 737 MAX inspections",
        "BREAKING: Boeing shares fall after FAA orders new 737 MAX inspections - Reuters",
        "boeing shares fall after faa orders new 737 max inspections https://t.co/AbC123",
        "RPT-BOEING SHARES FALL AFTER FAA ORDERS NEW 737 MAX INSPECTIONS | Bloomberg",
        "Boeing shares fall after FAA orders new 737 MAX inspections (AP)",
        "Boeing shares fall after FAA orders new 737 MAX inspections via @WSJ",
    ],
)
def test_retitled_copies_normalise_to_the_original(copy: str) -> None:
    original = "Boeing shares fall after FAA orders new 737 MAX inspections"
    assert normalise_headline(copy) == normalise_headline(original)


def test_normalising_keeps_cashtags_numbers_and_parenthesised_tickers() -> None:
    assert normalise_headline("$BA - Boeing &amp;amp; Airbus up 2.5% (AP)") == "$ba boeing airbus up 2.5%"
    assert cashtags(normalise_headline("Hedge funds bullish on Fastly, Inc. (FSLY)")) == {"$fsly"}
    assert normalise_headline("   ") == "" and shingles("") == frozenset()


def test_labelled_pairs_precision_and_recall_at_the_default_threshold() -> None:
    pairs = story_pairs.load()
    assert sum(same for _, _, same, _ in pairs) >= 300 and sum(not same for _, _, same, _ in pairs) >= 300
    m = story_pairs.measure(pairs, 0.5)  # FINSENT_STORY_SIMILARITY's default
    assert m["recall"] >= 0.99, m
    assert m["precision"] >= 0.97, m
    # the threshold matters: far lower joins many distinct headlines that share words
    assert story_pairs.measure(pairs, 0.2)["precision"] < m["precision"]


def test_distinct_headlines_sharing_words_stay_apart() -> None:
    a = headline("a", "$KMPR - Kemper EPS beats by $0.04, beats on revenue", 0)
    b = headline("b", "$RPD - Rapid7 EPS beats by $0.04, beats on revenue", 1)
    c = headline("c", "Boeing shares rise after FAA clears 737 MAX to fly again", 2)
    d = headline("d", "Boeing shares fall after FAA orders new 737 MAX inspections", 3)
    result = cluster([a, b, c, d], [], threshold=0.5, window=DAY)
    assert {e: x.story_id for e, x in result.assigned.items()} == {"a": "a", "b": "b", "c": "c", "d": "d"}
    assert all(x.novelty == 1.0 for x in result.assigned.values())


STREAM = [
    ("w1", "Boeing shares fall after FAA orders new 737 MAX inspections", 0),
    ("w2", "UPDATE 1-Boeing shares fall after FAA orders new 737 MAX inspections - Reuters", 5),
    ("w3", "BREAKING: BOEING SHARES FALL AFTER FAA ORDERS NEW 737 MAX INSPECTIONS", 9),
    ("o1", "Oil prices jump as OPEC+ agrees deeper output cuts", 3),
    ("o2", "Oil prices jump as OPEC+ agrees to deeper output cuts | Reuters", 4),
    ("x1", "Apple upgraded to buy from hold at Jefferies", 6),
    ("late", "Boeing shares fall after FAA orders new 737 MAX inspections https://t.co/z", 60 * 30),
]


def _replay(order: list[int], batch: int) -> dict[str, tuple[str, float]]:
    """Cluster STREAM in `order`, `batch` items at a time, as the store would: each batch sees
    every item stored before it (with matched band keys), merges and novelty applied."""
    rows: dict[str, StoredMember] = {}
    items = [headline(e, t, m) for e, t, m in STREAM]
    for i in range(0, len(order), batch):
        new = [items[j] for j in order[i : i + batch]]
        keys = {k for h in new for k in h.band_keys}
        stored = [m for m in rows.values() if keys & set(m.headline.band_keys)]
        result = cluster(new, stored, threshold=0.5, window=DAY)
        for old, (story, first) in result.merged.items():
            for e, m in list(rows.items()):
                if m.story_id == old:
                    rows[e] = StoredMember(m.headline, story, first, m.novelty)
        for e, n in result.novelty.items():
            m = rows[e]
            rows[e] = StoredMember(m.headline, m.story_id, m.story_published_at, n)
        for h in new:
            a = result.assigned[h.event_id]
            rows[h.event_id] = StoredMember(h, a.story_id, a.story_published_at, a.novelty)
    return {e: (m.story_id, round(m.novelty, 9)) for e, m in rows.items()}


def test_stories_do_not_depend_on_arrival_order_or_batching() -> None:
    expected = _replay(list(range(len(STREAM))), batch=len(STREAM))
    assert {e: s for e, (s, _) in expected.items()} == {
        "w1": "w1", "w2": "w1", "w3": "w1", "o1": "o1", "o2": "o1", "x1": "x1", "late": "late",
    }  # fmt: skip
    assert expected["w1"][1] == 1.0 and expected["w2"][1] == 0.0 and expected["o2"][1] < 0.5
    assert expected["late"][1] == 1.0  # 30 h after: outside the 24 h window, a story of its own
    rng = random.Random(3)
    orders = [list(p) for p in itertools.islice(itertools.permutations(range(len(STREAM))), 0, 5040, 97)]
    for order in orders:
        for batch in (1, 2, 3):
            assert _replay(order, batch) == expected, (order, batch)
    shuffled = list(range(len(STREAM)))
    rng.shuffle(shuffled)
    assert _replay(shuffled, 1) == expected


def test_a_late_earlier_item_takes_over_the_story_and_lowers_its_copies_novelty() -> None:
    first = headline("first", "Fed raises rates by a quarter point, signals more hikes ahead", 0)
    copy = headline("copy", "BREAKING: Fed raises rates by a quarter point, signals more hikes ahead", 10)
    stored = [StoredMember(copy, "copy", copy.published_at, 1.0)]
    result = cluster([first], stored, threshold=0.5, window=DAY)
    assert result.assigned["first"].story_id == "first" and result.assigned["first"].novelty == 1.0
    assert result.merged == {"copy": ("first", first.published_at)}
    assert result.novelty == {"copy": 0.0}


def test_exact_copies_store_no_band_keys_within_the_window_of_a_carrier() -> None:
    text = "Fed raises rates by a quarter point, signals more hikes ahead"
    key = text_key(normalise_headline(text))
    assert key == text_key(normalise_headline("BREAKING: " + text.upper() + " - Reuters"))
    assert key != text_key(normalise_headline("Fed holds rates steady, signals patience"))

    def item(event_id: str, hours: float) -> Headline:
        h = headline(event_id, text, hours * 60)
        return Headline(h.event_id, h.published_at, h.shingles, h.band_keys, h.cashtags, key)

    batch = [item("c", 40), item("a", 0), item("b", 20), item("a2", 1)]
    # in order of publication: a carries, a2 and b are within 24 h of a, c (40 h) is not
    assert band_carriers(batch, [], window=DAY) == {"a", "c"}
    # a stored carrier 10 h before b covers a, a2 and b; c is 30 h after it
    assert band_carriers(batch, [(key, T0 + timedelta(hours=10))], window=DAY) == {"c"}
    # a headline with no words has no keys and carries nothing
    empty = Headline("e", T0, frozenset(), (), frozenset(), None)
    assert band_carriers([empty], [], window=DAY) == set()

"""Story clustering on labelled headline pairs: precision and recall by similarity threshold.

The labelled set (tests/data/story_pairs.csv, built by `--write` from the seed data and
kept in the repository) has real headlines from bert_core/seed_data with hand-made
re-titled copies of them (wire prefixes, trailing links and source tags, casing, HTML
entities, a word added or dropped) as positives, and pairs of distinct seed headlines
that share words (the same cashtag, or at least three words) as negatives.

    .venv/bin/python benchmarks/story_pairs.py            # measure, print the table
    .venv/bin/python benchmarks/story_pairs.py --write    # rebuild the labelled set (seeded)

A pair counts as joined when the clustering would link it: its exact shingle Jaccard
similarity reaches the threshold *and* the LSH band keys put it up for comparison (the
MinHash step can only lose pairs, never add them), so the recall measured is that of the
whole lookup, not just of the similarity. The table goes to benchmarks/results/story_pairs.json.
"""

from __future__ import annotations

import argparse
import csv
import html
import random
import re
from datetime import UTC, datetime
from pathlib import Path

from result_file import machine, write_result

from services.stories import (
    Headline,
    band_keys,
    cashtags,
    minhash,
    normalise_headline,
    shingles,
    similarity_of,
)

PAIRS = Path(__file__).resolve().parents[1] / "tests" / "data" / "story_pairs.csv"
SEED = Path(__file__).resolve().parents[1] / "bert_core" / "seed_data" / "sentiment_train.csv"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)

PREFIXES = (
    "UPDATE 1-",
    "UPDATE 2-",
    "BREAKING: ",
    "RPT-",
    "EXCLUSIVE-",
    "CORRECTED-",
    "WRAPUP 1-",
    "Breaking News: ",
    "JUST IN: ",
    "FLASH: ",
    "[Reuters] ",
    "(Update) ",
)
SUFFIXES = (
    " - Reuters",
    " | Bloomberg",
    " (AP)",
    " via @WSJ",
    " - MarketWatch",
    " | CNBC",
    " https://t.co/Ab12Cd34Ef",
    " - Reuters https://reut.rs/2XyZ",
    " (Bloomberg)",
    " via @FT",
)
FILLERS = ("report", "sources say", "shares", "today", "analysts")


def _seed_headlines(limit: int, rng: random.Random) -> list[str]:
    with SEED.open(newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    # Headlines of at least 6 words after normalising: shorter "headlines" in the seed data
    # are tweets like "$AAPL up" that no outlet re-publishes as a story.
    good = [t for t in texts if len(normalise_headline(t).split()) >= 6]
    rng.shuffle(good)
    return good[:limit]


def _retitle(text: str, rng: random.Random) -> tuple[str, str]:
    """A re-titled copy of `text` and how it was made."""
    base = re.sub(r"\s*https?://\S+", "", text).strip()
    kinds = rng.sample(["prefix", "suffix", "case", "entity", "edit"], k=rng.randint(1, 3))
    out = base
    if "edit" in kinds:
        words = out.split()
        if len(words) > 7 and rng.random() < 0.5:
            del words[rng.randrange(1, len(words))]  # a word dropped
        else:
            words.insert(rng.randrange(1, len(words)), rng.choice(FILLERS))  # a word added
        out = " ".join(words)
    if "entity" in kinds:
        out = html.escape(out, quote=False).replace("'", "&#39;")
    if "case" in kinds:
        out = rng.choice([str.upper, str.lower, str.title])(out)
    if "prefix" in kinds:
        out = rng.choice(PREFIXES) + out
    if "suffix" in kinds:
        out = out + rng.choice(SUFFIXES)
    return out, "+".join(sorted(kinds))


def _words(text: str) -> set[str]:
    return {w for w in normalise_headline(text).split() if len(w) > 3}


def _bare(text: str) -> str:
    return " ".join(w for w in normalise_headline(text).split() if not w.startswith("$"))


# Hand-made pairs the generated ones do not cover: copies re-worded a little more, and
# distinct stories built on the same template or about the same company and event type.
HAND = (
    (
        "Boeing shares fall after FAA orders new 737 MAX inspections",
        "UPDATE 2-Boeing shares fall after FAA orders new 737 MAX inspections - sources",
        "1",
    ),
    (
        "Oil prices jump as OPEC+ agrees deeper output cuts",
        "Oil prices jump as OPEC+ agrees to deeper output cuts | Reuters",
        "1",
    ),
    (
        "Tesla recalls 120,000 Model S and Model X vehicles over seat belt issue",
        "TESLA RECALLS 120,000 MODEL S AND MODEL X VEHICLES OVER SEAT BELT ISSUE (AP)",
        "1",
    ),
    (
        "Fed raises rates by a quarter point, signals more hikes ahead",
        "BREAKING: Fed raises rates by quarter point, signals more hikes ahead https://t.co/x1",
        "1",
    ),
    (
        "Credit Suisse shares plunge to record low on funding fears",
        "Credit Suisse shares plunge to record low on funding fears - Bloomberg https://bloom.bg/3x",
        "1",
    ),
    (
        "Amazon to cut 18,000 jobs as tech layoffs deepen",
        "Amazon to cut 18,000 jobs as tech layoffs deepen, CEO Jassy says",
        "1",
    ),
    (
        "Goldman Sachs downgraded to neutral from buy at UBS",
        "Morgan Stanley downgraded to neutral from buy at UBS",
        "0",
    ),
    ("Apple upgraded to buy from hold at Jefferies", "Apple downgraded to hold from buy at Jefferies", "0"),
    (
        "Boeing shares fall after FAA orders new 737 MAX inspections",
        "Boeing shares rise after FAA clears 737 MAX to fly again",
        "0",
    ),
    (
        "Oil prices jump as OPEC+ agrees deeper output cuts",
        "Oil prices slide as OPEC+ fails to agree output cuts",
        "0",
    ),
    (
        "Tesla recalls 120,000 Model S and Model X vehicles over seat belt issue",
        "Ford recalls 120,000 Explorer vehicles over seat belt issue",
        "0",
    ),
    (
        "Fed raises rates by a quarter point, signals more hikes ahead",
        "ECB raises rates by half a point, signals slower hikes ahead",
        "0",
    ),
    (
        "Amazon to cut 18,000 jobs as tech layoffs deepen",
        "Meta to cut 11,000 jobs as tech layoffs deepen",
        "0",
    ),
    (
        "Stocks making the biggest moves premarket: Tesla, Nvidia, Disney",
        "Stocks making the biggest moves midday: Apple, Ford, Netflix",
        "0",
    ),
)


def build(seed: int = 30, positives: int = 300, negatives: int = 300) -> list[dict[str, str]]:
    rng = random.Random(seed)
    heads = _seed_headlines(4000, rng)
    rows: list[dict[str, str]] = []
    for text in heads[:positives]:
        copy, how = _retitle(text, rng)
        rows.append({"a": text, "b": copy, "same": "1", "kind": how})
    # Negatives: distinct headlines sharing a cashtag or three words (not the same once normalised).
    by_word: dict[str, list[str]] = {}
    for text in heads:
        for w in _words(text):
            by_word.setdefault(w, []).append(text)
    seen: set[tuple[str, str]] = set()
    candidates: list[tuple[str, str, str]] = []
    for text in heads:
        mine = _words(text)
        for w in sorted(mine):
            for other in by_word[w]:
                if other == text or normalise_headline(other) == normalise_headline(text):
                    continue
                pair = (min(text, other), max(text, other))
                if pair in seen:
                    continue
                if (
                    _bare(other) == _bare(text) and len(_bare(text).split()) >= 4
                ):  # the seed data's own re-published copies
                    seen.add(pair)
                    rows.append({"a": pair[0], "b": pair[1], "same": "1", "kind": "seed copy"})
                    continue
                shared = mine & _words(other)
                tag = [s for s in shared if s.startswith("$")]
                if tag or len(shared) >= 3:
                    seen.add(pair)
                    candidates.append((pair[0], pair[1], "cashtag" if tag else f"{len(shared)} words"))
    rng.shuffle(candidates)
    for a, b, how in candidates[:negatives]:
        rows.append({"a": a, "b": b, "same": "0", "kind": how})
    rows.extend({"a": a, "b": b, "same": same, "kind": "hand-made"} for a, b, same in HAND)
    return rows


def load(path: Path = PAIRS) -> list[tuple[str, str, bool, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return [(r["a"], r["b"], r["same"] == "1", r["kind"]) for r in csv.DictReader(f)]


def linked(a: str, b: str, threshold: float) -> tuple[bool, float]:
    ha, hb = _headline(a), _headline(b)
    sim = similarity_of(ha, hb)
    candidate = bool(set(ha.band_keys) & set(hb.band_keys))
    return candidate and sim >= threshold, sim


def _headline(text: str) -> Headline:
    normalised = normalise_headline(text)
    sh = shingles(normalised)
    keys = tuple(band_keys(minhash(sh))) if sh else ()
    return Headline(text, datetime(2026, 1, 1, tzinfo=UTC), sh, keys, cashtags(normalised))


def measure(pairs: list[tuple[str, str, bool, str]], threshold: float) -> dict[str, float]:
    tp = fp = fn = tn = 0
    for a, b, same, _ in pairs:
        joined, _ = linked(a, b, threshold)
        tp += same and joined
        fn += same and not joined
        fp += joined and not same
        tn += not same and not joined
    return {
        "threshold": threshold,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rebuild tests/data/story_pairs.csv")
    parser.add_argument(
        "--show-errors", type=float, default=None, help="print the misjudged pairs at this threshold"
    )
    args = parser.parse_args()
    info = machine()
    if args.write:
        rows = build()
        with PAIRS.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["a", "b", "same", "kind"])
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {len(rows)} pairs to {PAIRS}")
    pairs = load()
    print(f"{len(pairs)} pairs: {sum(p[2] for p in pairs)} copies, {sum(not p[2] for p in pairs)} distinct")
    print("| threshold | precision | recall | joined copies | joined distinct | missed copies |")
    print("|---|---|---|---|---|---|")
    table = [measure(pairs, t) for t in THRESHOLDS]
    for m in table:
        rates = f"{m['threshold']:.1f} | {m['precision']:.3f} | {m['recall']:.3f}"
        print(f"| {rates} | {m['tp']} | {m['fp']} | {m['fn']} |")
    copies = sum(p[2] for p in pairs)
    write_result("story_pairs", {"pairs": len(pairs), "copies": copies, "thresholds": table}, info)
    if args.show_errors is not None:
        for a, b, same, kind in pairs:
            joined, sim = linked(a, b, args.show_errors)
            if joined != same:
                print(f"{'MISSED' if same else 'WRONG '} {sim:.2f} [{kind}]\n   {a}\n   {b}")


if __name__ == "__main__":
    main()

"""Label-preserving text substitutions for training-set augmentation.

A headline's sentiment or topic rarely depends on which ticker, which company or which
exact figure it names ("$GM cut to Hold" reads like "$F cut to Hold"), but a small labelled
set lets the model memorise those surface tokens. Swapping them for others of the same kind
shows the classifier the same sentence shape with other entities: cashtags for cashtags seen
in the training texts, company names for others from a small shipped list, and figures for
other figures written the same way (digits, separators, decimals, sign and unit kept).

Pure functions without I/O; every random choice comes from a seed, so a run's augmented
texts are reproducible. Used on training texts only, never on dev.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# $AAPL, $BRK.B, $spx: a dollar sign, then 1-6 letters (an optional .class suffix), not part
# of a longer word and not a price ($5 has a digit after the sign).
CASHTAG = re.compile(r"(?<![\w$])\$[A-Za-z]{1,6}(?:\.[A-Za-z]{1,2})?(?![\w])")
# A figure written on its own: 5, 3.5, 1,200, 12.75 (not inside words, tickers, dates or URL
# ids such as t.co/bd0x9F, not followed by a letter or hyphen: Q3, 5G, 10-K, 5-year stay).
NUMBER = re.compile(r"(?<![\w.,/])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w/-]|[.,]\d)")
# A four-digit year 1900-2099 keeps its meaning as a date; changing it teaches nothing.
_YEAR = re.compile(r"(?:19|20)\d\d")

# Widely covered listed companies, as headlines name them. A shipped list rather than one
# mined from the training texts: name extraction without a tagger would mostly find
# capitalised non-names (analysts' verbs, headline case). Longer names first in matching.
COMPANY_NAMES: tuple[str, ...] = (
    "Apple",
    "Microsoft",
    "Amazon",
    "Alphabet",
    "Google",
    "Meta",
    "Facebook",
    "Netflix",
    "Nvidia",
    "Intel",
    "AMD",
    "Qualcomm",
    "Broadcom",
    "Oracle",
    "Salesforce",
    "Adobe",
    "IBM",
    "Cisco",
    "Tesla",
    "Ford",
    "General Motors",
    "Boeing",
    "Airbus",
    "Caterpillar",
    "Deere",
    "3M",
    "Honeywell",
    "General Electric",
    "Exxon Mobil",
    "Chevron",
    "ConocoPhillips",
    "BP",
    "Shell",
    "Walmart",
    "Target",
    "Costco",
    "Home Depot",
    "Nike",
    "Starbucks",
    "McDonald's",
    "Coca-Cola",
    "PepsiCo",
    "Procter & Gamble",
    "Johnson & Johnson",
    "Pfizer",
    "Merck",
    "Moderna",
    "AbbVie",
    "Eli Lilly",
    "UnitedHealth",
    "JPMorgan",
    "Goldman Sachs",
    "Morgan Stanley",
    "Bank of America",
    "Citigroup",
    "Wells Fargo",
    "Visa",
    "Mastercard",
    "PayPal",
    "Disney",
    "Comcast",
    "Verizon",
    "AT&T",
    "Uber",
    "Lyft",
    "Airbnb",
    "Zoom",
    "Snap",
    "Twitter",
    "Alibaba",
    "Baidu",
    "Tencent",
    "Sony",
    "Toyota",
    "Samsung",
    "Siemens",
    "Volkswagen",
    "BMW",
    "Nestle",
    "Unilever",
)


@dataclass(frozen=True)
class SubstitutionPool:
    """What a substitution may put in: cashtags (with their `$`) and company names."""

    cashtags: tuple[str, ...]
    companies: tuple[str, ...] = COMPANY_NAMES

    def company_pattern(self) -> re.Pattern[str] | None:
        if not self.companies:
            return None
        names = sorted(set(self.companies), key=len, reverse=True)
        return re.compile(r"(?<![\w&'-])(?:" + "|".join(re.escape(n) for n in names) + r")(?![\w&'-])")


def cashtag_pool(texts: Iterable[str], *, min_count: int = 1) -> tuple[str, ...]:
    """The cashtags found in `texts` (upper-cased, at least `min_count` times), sorted so the
    pool, and so the seeded choices from it, do not depend on the texts' order."""
    counts: dict[str, int] = {}
    for text in texts:
        for tag in CASHTAG.findall(text):
            key = tag.upper()
            counts[key] = counts.get(key, 0) + 1
    return tuple(sorted(t for t, c in counts.items() if c >= min_count))


def substitute_cashtags(text: str, rng: random.Random, cashtags: Sequence[str]) -> str:
    """Each cashtag replaced by another one drawn from `cashtags` (the same one where the pool
    has no other); the same ticker twice in a text gets the same replacement."""
    chosen: dict[str, str] = {}

    def swap(match: re.Match[str]) -> str:
        tag = match.group(0)
        if tag.upper() not in chosen:
            chosen[tag.upper()] = _other(rng, cashtags, tag.upper(), tag)
        return chosen[tag.upper()]

    return CASHTAG.sub(swap, text) if cashtags else text


def substitute_numbers(text: str, rng: random.Random, *, low: float = 0.5, high: float = 2.0) -> str:
    """Every figure of `text` times one factor drawn from [low, high], written the same way:
    as many decimals, thousands commas where it had them, at least 1 where it was at least 1;
    the % or $ or unit around it untouched, years as they are. One factor for the whole text
    keeps the figures' order, so "PT cut to $30 from $32" stays a cut."""
    factor = rng.uniform(low, high)

    def swap(match: re.Match[str]) -> str:
        figure = match.group(0)
        if _YEAR.fullmatch(figure):
            return figure
        value = float(figure.replace(",", ""))
        decimals = len(figure.split(".")[1]) if "." in figure else 0
        scaled = value * factor
        if value >= 1:
            scaled = max(scaled, 1.0)
        return f"{scaled:{',' if ',' in figure else ''}.{decimals}f}"

    return NUMBER.sub(swap, text)


def substitute_companies(text: str, rng: random.Random, pool: SubstitutionPool) -> str:
    """Each company name from `pool.companies` replaced by another one from it."""
    pattern = pool.company_pattern()
    if pattern is None:
        return text
    chosen: dict[str, str] = {}

    def swap(match: re.Match[str]) -> str:
        name = match.group(0)
        if name not in chosen:
            chosen[name] = _other(rng, pool.companies, name, name)
        return chosen[name]

    return pattern.sub(swap, text)


def augment_text(text: str, seed: int, pool: SubstitutionPool) -> str:
    """`text` with its cashtags, figures and company names substituted (`seed` fixes every
    choice). A text with none of them comes back unchanged."""
    rng = random.Random(seed)
    text = substitute_cashtags(text, rng, pool.cashtags)
    text = substitute_companies(text, rng, pool)
    return substitute_numbers(text, rng)


def augment_texts(texts: Sequence[str], share: float, seed: int, pool: SubstitutionPool) -> list[str]:
    """A copy of `texts` where a `share` (0..1) of them, drawn by `seed`, is `augment_text`-ed;
    the others, and the order, stay as they are."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"augmentation share must be within 0..1, not {share}")
    rng = random.Random(seed)
    count = round(share * len(texts))
    chosen = set(rng.sample(range(len(texts)), count)) if count else set()
    return [augment_text(t, seed * 1_000_003 + i, pool) if i in chosen else t for i, t in enumerate(texts)]


def _other(rng: random.Random, items: Sequence[str], current: str, fallback: str) -> str:
    """A random item of `items` other than `current`; `fallback` where there is no other."""
    for _ in range(8 if items else 0):  # bounded: a pool of only `current` has no other
        pick = items[rng.randrange(len(items))]
        if pick != current:
            return pick
    return fallback

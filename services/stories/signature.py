"""MinHash signatures and LSH band keys of headlines' shingles, a whole batch at once (numpy).

Pure functions, no I/O. The band keys are what the database indexes (services.stories.store): two
headlines whose shingle sets have Jaccard similarity s share at least one of `BANDS` keys
with probability 1 - (1 - s**ROWS)**BANDS, so the candidate lookup is one indexed query
on the keys whatever the stream's size; candidates are then confirmed on their exact
Jaccard similarity (`normalise.jaccard`), so the MinHash estimate only decides who is
compared, never who joins. With 10 bands of 2 rows (`candidate_probability`), a pair at
s = 0.5 is compared with probability 0.94, at 0.6 0.99, at 0.8 1 - 4e-5; a pair at 0.1
with probability 0.10, which keeps the candidates of a busy day's headlines few. Why not
more bands: each is one index entry per item stored (a `story_bands` row on SQLite); 20
bands of 3 rows cost twice the rows for a lower probability at 0.5 (0.93); the recall on
the labelled pairs is 0.997 here against 1.000 (docs/performance.md#story-clustering).

Why not datasketch's MinHash: it is one object and one numpy pass per headline; measured
in the scorer's storing step that cost 75 µs a headline for the signature and 50 µs more
for hashing its bands (`benchmarks/story_clustering.py`), a tenth of the model's time per
headline on a fast CPU before any database work. The same universal hashing
(h -> (a·h + b) mod p, p = 2**31 - 1) over the whole batch as one matrix costs a few µs.

Shingles are hashed with CRC-32 and the permutations drawn from a fixed seed: every worker
and every replay computes the same keys for the same headline.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Final

import numpy as np

SEED: Final = 20261206
NUM_PERM: Final = 20
BANDS: Final = 10
ROWS: Final = NUM_PERM // BANDS
PRIME: Final = (1 << 31) - 1
# Odd 64-bit multipliers mixing a band's rows and its index into one key (wrapping arithmetic).
_MIX: Final = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93], dtype=np.uint64
)


@cache
def _permutations() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    a = rng.integers(1, PRIME, NUM_PERM, dtype=np.uint64)
    b = rng.integers(0, PRIME, NUM_PERM, dtype=np.uint64)
    return a, b


def signatures(shingle_sets: Sequence[Iterable[str]]) -> np.ndarray:
    """The MinHash signatures of the sets, one row of NUM_PERM values each (PRIME
    everywhere for an empty set)."""
    a, b = _permutations()
    hashes: list[int] = []
    starts: list[int] = []
    for shingles in shingle_sets:
        starts.append(len(hashes))
        hashes.extend(zlib.crc32(s.encode("utf-8")) for s in shingles)
    out = np.full((len(starts), NUM_PERM), PRIME, dtype=np.uint64)
    if not hashes:
        return out
    h = np.asarray(hashes, dtype=np.uint64) % np.uint64(PRIME)
    values = (h[:, None] * a[None, :] + b[None, :]) % np.uint64(PRIME)
    begin = np.asarray(starts, dtype=np.int64)
    end = np.append(begin[1:], len(hashes))
    filled = begin < end
    out[filled] = np.minimum.reduceat(values, begin[filled], axis=0)
    return out


def band_key_matrix(signatures: np.ndarray) -> np.ndarray:
    """One signed 64-bit key per band and row of `signatures` (the band's index is mixed
    in, so equal rows in different bands do not collide); fits BIGINT and SQLite INTEGER."""
    rows = signatures.reshape(len(signatures), BANDS, ROWS).astype(np.uint64)
    with np.errstate(over="ignore"):
        keys = (rows * _MIX[:ROWS]).sum(axis=2, dtype=np.uint64)
        keys = keys + np.arange(BANDS, dtype=np.uint64) * _MIX[ROWS]
        keys ^= keys >> np.uint64(29)
        keys = keys * _MIX[0]
    return keys.view(np.int64)


def minhash(shingles: Iterable[str]) -> np.ndarray:
    """The signature of one shingle set."""
    return signatures([list(shingles)])[0]


def band_keys(signature: np.ndarray) -> list[int]:
    """The band keys of one signature."""
    return [int(k) for k in band_key_matrix(signature.reshape(1, -1))[0]]


def candidate_probability(similarity: float, *, bands: int = BANDS, rows: int = ROWS) -> float:
    """Probability that two shingle sets of this Jaccard similarity share a band key."""
    return 1.0 - (1.0 - similarity**rows) ** bands

"""MinHash signatures and LSH band keys of a headline's shingles (datasketch's MinHash).

Pure functions, no I/O. The band keys are what the database indexes (`story_bands`): two
headlines whose shingle sets have Jaccard similarity s share at least one of `bands` keys
with probability 1 - (1 - s**rows)**bands, so the candidate lookup is one indexed query
on the keys whatever the stream's size; candidates are then confirmed on their exact
Jaccard similarity (`normalise.jaccard`), so the MinHash estimate only decides who is
compared, never who joins. With 20 bands of 3 rows (`candidate_probability`), a pair at
s = 0.5 is compared with probability 0.93, at 0.6 0.99, at 0.8 1 - 3e-8; a pair at 0.1
with probability 0.02, which keeps the candidates of a busy day's headlines few.

The permutations are drawn once per process from a fixed seed: every worker and every
replay computes the same keys for the same headline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np
from datasketch import MinHash

SEED: Final = 20261206
NUM_PERM: Final = 60
BANDS: Final = 20
ROWS: Final = NUM_PERM // BANDS


@dataclass(frozen=True, slots=True)
class _Permutations:
    values: tuple[np.ndarray, np.ndarray]
    scheme: str


@lru_cache(maxsize=1)
def _permutations() -> _Permutations:
    base = MinHash(num_perm=NUM_PERM, seed=SEED)
    a, b = base.permutations
    return _Permutations((np.asarray(a), np.asarray(b)), base.scheme)


def minhash(shingles: Iterable[str]) -> np.ndarray:
    """The NUM_PERM MinHash values of a shingle set (all 2**32 - 1 for an empty set)."""
    perms = _permutations()
    m = MinHash(num_perm=NUM_PERM, seed=SEED, permutations=perms.values, scheme=perms.scheme)
    values = [s.encode("utf-8") for s in shingles]
    if values:
        m.update_batch(values)
    return np.asarray(m.hashvalues)


def band_keys(signature: np.ndarray) -> list[int]:
    """One signed 64-bit key per band (the band's index is hashed in, so equal rows in
    different bands do not collide); fits PostgreSQL's BIGINT and SQLite's INTEGER."""
    rows = np.ascontiguousarray(signature, dtype="<u8").reshape(BANDS, ROWS)
    keys: list[int] = []
    for band, values in enumerate(rows):
        digest = hashlib.blake2b(values.tobytes(), digest_size=8, person=band.to_bytes(16, "little")).digest()
        keys.append(int.from_bytes(digest, "little", signed=True))
    return keys


def candidate_probability(similarity: float, *, bands: int = BANDS, rows: int = ROWS) -> float:
    """Probability that two shingle sets of this Jaccard similarity share a band key."""
    return 1.0 - (1.0 - similarity**rows) ** bands

"""Stories: the copies of one news story re-published by many outlets, grouped.

Pure modules: `normalise` (a headline without wire prefixes, links, source tags; its word-pair
shingles; Jaccard similarity), `signature` (MinHash signature and LSH band keys, datasketch),
`clustering` (which story each new item joins, its novelty; order-independent).
I/O: `store` (the scorer's story step inside its storing transaction; PostgreSQL and SQLite)
and `queries` (story sizes and sources, for the alerter and the dashboard).

Importing this package loads datasketch (and numpy/scipy); the alerter and the dashboard,
which only read stories, import `services.stories.queries` alone.
"""

from services.stories.clustering import (
    Assignment,
    ClusterResult,
    Headline,
    StoredMember,
    cluster,
    similarity_of,
)
from services.stories.normalise import cashtags, jaccard, normalise_headline, shingles
from services.stories.signature import band_keys, candidate_probability, minhash
from services.stories.store import StoryClustering, to_headline

__all__ = [
    "Assignment",
    "ClusterResult",
    "Headline",
    "StoredMember",
    "StoryClustering",
    "band_keys",
    "candidate_probability",
    "cashtags",
    "cluster",
    "jaccard",
    "minhash",
    "normalise_headline",
    "shingles",
    "similarity_of",
    "to_headline",
]

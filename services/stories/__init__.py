"""Stories: the copies of one news story re-published by many outlets, grouped.

Pure modules: `normalise` (a headline without wire prefixes, links, source tags; its word-pair
shingles; Jaccard similarity), `signature` (MinHash signatures and LSH band keys of a batch, numpy),
`clustering` (which story each new item joins, its novelty; order-independent).
I/O: `store` (the scorer's story step inside its storing transaction; PostgreSQL and SQLite).

Reads of stories (sizes, sources) for the alerter and the dashboard are in
`services.storage.story_queries`.
"""

from services.stories.clustering import (
    Assignment,
    ClusterResult,
    Headline,
    StoredMember,
    band_carriers,
    cluster,
    similarity_of,
)
from services.stories.normalise import cashtags, jaccard, normalise_headline, shingles, text_key
from services.stories.signature import band_key_matrix, band_keys, candidate_probability, minhash, signatures
from services.stories.store import StoryClustering, to_headlines

__all__ = [
    "Assignment",
    "ClusterResult",
    "Headline",
    "StoredMember",
    "StoryClustering",
    "band_carriers",
    "band_key_matrix",
    "band_keys",
    "candidate_probability",
    "cashtags",
    "cluster",
    "jaccard",
    "minhash",
    "normalise_headline",
    "shingles",
    "signatures",
    "similarity_of",
    "text_key",
    "to_headlines",
]

"""A lexical nearest-neighbour memory beside a task head: the head's probabilities are mixed
with a vote of the labelled training texts that share the most words and word pairs with a
text (kNN-augmented classification).

Why: financial news topics come in templates ("$XYZ price target raised to $N at Firm"), and
37 % of the dev texts have a near-duplicate among the training texts. The fine-tuned head
sees a sentence vector and misses some of them; a TF-IDF memory sees exactly the shared
words. The two err differently, so their mix beats both: topic accuracy +0.9 pt on the dev
split at no training cost (docs/performance.md#model-quality). On sentiment the memory does
not pay (its labels depend on a few words in context, not on shared wording), so only topic
has one by default (`MemoryOptions`).

Why TF-IDF and not the encoder's own vectors: the encoder's nearest neighbours agree with
its head (+0.6 pt), the lexical ones add what the head lacks; and words cost about 70 µs a
text on one core, against an encoder pass that costs a millisecond. Terms in more than
`max_df` of the texts ("the", "$", "to") are left out: they carry no topic and would make
every text a neighbour of most others (a 5x slower lookup).

Torch-free (numpy, SciPy, scikit-learn). Stored as arrays in a safetensors file and the
vocabulary as JSON, never pickled: a model directory can come from the database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from bert_core.config import MemoryOptions
from bert_core.errors import ModelIntegrityError

NGRAM_RANGE = (1, 2)  # words and word pairs


def memory_files(task: str) -> tuple[str, str]:
    """The arrays and the vocabulary of `task`'s memory in a model directory."""
    return f"memory-{task}.safetensors", f"memory-{task}.json"


def _vectorizer(**kwargs: object) -> TfidfVectorizer:
    # sublinear tf: a word repeated in one headline is not more of a topic word
    return TfidfVectorizer(ngram_range=NGRAM_RANGE, sublinear_tf=True, dtype=np.float32, **kwargs)


def mix_votes(probs: np.ndarray, votes: np.ndarray, head_weight: float) -> np.ndarray:
    """`head_weight` x the head's probabilities + the rest x the memory's votes, per text; a
    text without votes (a row of zeros) keeps the head's probabilities."""
    found = votes.sum(axis=1, keepdims=True) > 0
    mixed = np.where(found, head_weight * probs + (1.0 - head_weight) * votes, probs)
    return mixed.astype(probs.dtype, copy=False)


@dataclass
class LexicalMemory:
    """The training texts of one task as TF-IDF rows, their labels and how votes mix in."""

    vectorizer: TfidfVectorizer
    keys: sparse.csr_matrix  # terms x texts: one sparse product scores a batch against all
    labels: np.ndarray  # class id per text
    num_classes: int
    options: MemoryOptions
    _labels_onehot: sparse.csr_matrix | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(
        cls, texts: Sequence[str], labels: Sequence[int], num_classes: int, options: MemoryOptions
    ) -> LexicalMemory:
        """A memory of the (normalised) training texts of one task."""
        vectorizer = _vectorizer(min_df=options.min_df, max_df=options.max_df)
        try:
            rows = vectorizer.fit_transform(list(texts))
        except ValueError:  # too few texts for min_df and max_df: no term is left; never votes
            vectorizer = _vectorizer(vocabulary={"": 0})
            vectorizer.idf_ = np.ones(1, dtype=np.float32)
            rows = sparse.csr_matrix((len(texts), 1), dtype=np.float32)
        return cls(vectorizer, rows.T.tocsr(), np.asarray(labels, dtype=np.int64), num_classes, options)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def votes(self, texts: Sequence[str]) -> np.ndarray:
        """Per text, the class distribution of the memory texts it shares terms with, each
        weighted by exp((similarity - best) / temperature): at the default temperature a
        text 0.3 less similar than the best counts 0.25 %, so the nearest few decide, without
        a top-k per row (sparse products only, no loop over texts). A row of zeros where no
        memory text shares a term with it: the head decides alone there."""
        scores = (self.vectorizer.transform(list(texts)) @ self.keys).tocsr()
        counts = np.diff(scores.indptr)
        if scores.nnz:
            starts = scores.indptr[:-1][counts > 0]
            best = np.zeros(len(counts), dtype=scores.data.dtype)
            best[counts > 0] = np.maximum.reduceat(scores.data, starts)
            scores.data = np.exp((scores.data - np.repeat(best, counts)) / self.options.temperature)
        votes = np.asarray((scores @ self._label_matrix()).todense(), dtype=np.float64)
        totals = votes.sum(axis=1, keepdims=True)
        return np.divide(votes, totals, out=np.zeros_like(votes), where=totals > 0)

    def _label_matrix(self) -> sparse.csr_matrix:
        """texts x classes, a 1 at each text's class: scores @ it sums the weights per class."""
        if self._labels_onehot is None:
            n = len(self)
            self._labels_onehot = sparse.csr_matrix(
                (np.ones(n, dtype=np.float32), (np.arange(n), self.labels)), shape=(n, self.num_classes)
            )
        return self._labels_onehot

    def mix(self, probs: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """The head's probabilities mixed with the votes (`head_weight` to the head); texts
        the memory has no neighbour for keep the head's."""
        return mix_votes(probs, self.votes(texts), self.options.head_weight)

    def save(self, folder: Path, task: str) -> None:
        from safetensors.numpy import save_file

        arrays_name, vocabulary_name = memory_files(task)
        keys = self.keys.tocsr()
        save_file(
            {
                "keys_data": keys.data.astype(np.float32),
                "keys_indices": keys.indices.astype(np.int32),
                "keys_indptr": keys.indptr.astype(np.int64),
                "idf": np.asarray(self.vectorizer.idf_, dtype=np.float32),
                "labels": self.labels.astype(np.int64),
            },
            str(folder / arrays_name),
        )
        vocabulary = {term: int(i) for term, i in self.vectorizer.vocabulary_.items()}
        record = {
            "num_classes": self.num_classes,
            "texts": len(self),
            "options": {
                "temperature": self.options.temperature,
                "head_weight": self.options.head_weight,
                "min_df": self.options.min_df,
                "max_df": self.options.max_df,
            },
            "vocabulary": vocabulary,
        }
        (folder / vocabulary_name).write_text(json.dumps(record, ensure_ascii=False))

    @classmethod
    def load(cls, folder: Path, task: str) -> LexicalMemory:
        from safetensors.numpy import load_file

        arrays_name, vocabulary_name = memory_files(task)
        try:
            arrays = load_file(str(folder / arrays_name))
            record = json.loads((folder / vocabulary_name).read_text(encoding="utf-8"))
            vocabulary = {str(t): int(i) for t, i in record["vocabulary"].items()}
            options = MemoryOptions(tasks=(task,), **record["options"])
            idf = arrays["idf"]
            labels = arrays["labels"]
            terms = len(vocabulary)
            keys = sparse.csr_matrix(
                (arrays["keys_data"], arrays["keys_indices"], arrays["keys_indptr"]),
                shape=(terms, labels.shape[0]),
            )
            keys.check_format(full_check=True)  # indices in range: SciPy's products do not check
            num_classes = int(record["num_classes"])
            if idf.shape != (terms,) or (labels.size and (labels.min() < 0 or labels.max() >= num_classes)):
                raise ValueError("its arrays do not match its vocabulary and classes")
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ModelIntegrityError(f"{folder}: cannot load the {task} memory ({exc})") from None
        vectorizer = _vectorizer(vocabulary=vocabulary)
        vectorizer.idf_ = idf
        return cls(vectorizer, keys, labels, num_classes, options)

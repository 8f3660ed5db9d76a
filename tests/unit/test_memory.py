"""The lexical memory beside a task head (bert_core.memory): votes, mixing, storage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bert_core import LexicalMemory, MemoryOptions, ModelIntegrityError
from bert_core.memory import memory_files, mix_votes

TEXTS = [
    "acme raises price target on widgets",
    "acme raises price target on gadgets",
    "central bank holds interest rates",
    "central bank cuts interest rates",
    "oil output falls in the gulf",
    "oil output rises in the north sea",
]
LABELS = [0, 0, 1, 1, 2, 2]
# every term counts (the default leaves out terms in fewer than 2 or more than 5 % of the texts)
ALL_TERMS = MemoryOptions(min_df=1, max_df=1.0)


def test_a_text_votes_for_the_class_of_the_memory_texts_it_shares_words_with() -> None:
    memory = LexicalMemory.build(TEXTS, LABELS, 3, ALL_TERMS)
    votes = memory.votes(["acme raises price target on gizmos", "bank cuts rates", "zebra quartet xylophone"])
    assert votes.shape == (3, 3)
    assert votes[0].argmax() == 0 and votes[0, 0] > 0.99
    assert votes[1].argmax() == 1
    assert np.allclose(votes[:2].sum(axis=1), 1.0)
    assert not votes[2].any()  # no shared term: no vote at all


def test_the_nearest_texts_decide_over_many_weaker_ones() -> None:
    # one near-duplicate of class 1 against three texts of class 0 that share one word each
    texts = ["deal talks", "deal news", "deal rumours", "acme agrees merger deal with globex"]
    memory = LexicalMemory.build(texts, [0, 0, 0, 1], 2, ALL_TERMS)
    votes = memory.votes(["acme agrees merger deal with globex today"])
    assert votes[0, 1] > 0.9


def test_mixing_keeps_the_head_where_the_memory_has_no_vote() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]], dtype=np.float32)
    votes = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    mixed = mix_votes(probs, votes, 0.6)
    assert mixed.dtype == np.float32
    assert np.allclose(mixed[0], [0.42, 0.52, 0.06])  # the memory turns the first text
    assert np.array_equal(mixed[1], probs[1])
    assert np.allclose(mixed.sum(axis=1), 1.0)


def test_default_options_leave_out_rare_and_common_terms() -> None:
    texts = [
        f"the market note {i} on rates" if i % 2 else f"the stock {i} jumps on earnings" for i in range(60)
    ]
    memory = LexicalMemory.build(texts, [i % 2 for i in range(60)], 2, MemoryOptions())
    vocabulary = memory.vectorizer.vocabulary_
    assert "the" not in vocabulary and "on" not in vocabulary  # in every text
    assert "note 7" not in vocabulary  # in one text only
    assert memory.votes(["stock jumps"])[0].argmax() == 0


def test_too_few_texts_give_a_memory_that_never_votes() -> None:
    memory = LexicalMemory.build(["one text", "another"], [0, 1], 2, MemoryOptions())
    assert not memory.votes(["one text"]).any()


def test_a_saved_memory_loads_and_votes_the_same(tmp_path: Path) -> None:
    memory = LexicalMemory.build(TEXTS, LABELS, 3, MemoryOptions(min_df=1, max_df=1.0, temperature=0.1))
    memory.save(tmp_path, "topic")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(memory_files("topic"))
    loaded = LexicalMemory.load(tmp_path, "topic")
    queries = ["bank holds rates", "oil output in the gulf", "acme widgets"]
    assert np.array_equal(loaded.votes(queries), memory.votes(queries))
    assert loaded.options.temperature == 0.1 and loaded.options.head_weight == memory.options.head_weight
    assert len(loaded) == len(TEXTS)


@pytest.mark.parametrize(
    "damage", ["labels out of range", "vocabulary cut", "arrays missing", "index out of range"]
)
def test_a_damaged_memory_is_one_clear_error(tmp_path: Path, damage: str) -> None:
    LexicalMemory.build(TEXTS, LABELS, 3, ALL_TERMS).save(tmp_path, "topic")
    arrays, vocabulary = (tmp_path / name for name in memory_files("topic"))
    record = json.loads(vocabulary.read_text())
    if damage == "labels out of range":
        record["num_classes"] = 2
    elif damage == "vocabulary cut":
        record["vocabulary"] = dict(list(record["vocabulary"].items())[:3])
    elif damage == "index out of range":
        from safetensors.numpy import load_file, save_file

        tensors = load_file(str(arrays))
        tensors["keys_indices"][0] = 10_000  # a text that does not exist
        save_file(tensors, str(arrays))
    else:
        arrays.unlink()
    vocabulary.write_text(json.dumps(record))
    with pytest.raises(ModelIntegrityError, match="cannot load the topic memory"):
        LexicalMemory.load(tmp_path, "topic")

"""The retraining's training rows: replay sampling and merging (pure functions)."""

from __future__ import annotations

from collections import Counter

from services.learning.training_set import merge_rows, replay_sample, replay_size


def pool(n_per_class: dict[int, int]) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for label, n in n_per_class.items():
        for i in range(n):
            texts.append(f"class {label} text {i}")
            labels.append(label)
    return texts, labels


def test_replay_is_stratified_and_leaves_out_excluded_texts() -> None:
    texts, labels = pool({0: 600, 1: 300, 2: 100})
    excluded = {"class 0 text 1", "class 2 text 5"}
    got_texts, got_labels = replay_sample(texts, labels, size=100, exclude=excluded, seed=1)
    assert len(got_texts) == 100
    assert not excluded & set(got_texts)
    assert Counter(got_labels) == {0: 60, 1: 30, 2: 10}  # the pool's class shares
    assert len(set(got_texts)) == 100
    # the same seed gives the same sample; another seed another one
    assert replay_sample(texts, labels, size=100, exclude=excluded, seed=1)[0] == got_texts
    assert replay_sample(texts, labels, size=100, exclude=excluded, seed=2)[0] != got_texts


def test_replay_larger_than_the_pool_takes_all_of_it() -> None:
    texts, labels = pool({0: 3, 1: 2})
    got_texts, _ = replay_sample(texts, labels, size=50, exclude={"class 1 text 0"}, seed=0)
    assert sorted(got_texts) == sorted(set(texts) - {"class 1 text 0"})


def test_replay_size_follows_the_ratio_with_a_floor() -> None:
    assert replay_size(400, ratio=2.0, minimum=500) == 800
    assert replay_size(100, ratio=2.0, minimum=500) == 500
    assert replay_size(0, ratio=2.0, minimum=0) == 0


def test_analyst_labels_win_over_replay_rows_of_the_same_text() -> None:
    texts, labels = merge_rows({"oil falls": 0, "gold up": 1}, ["oil falls", "fed holds"], [2, 2])
    assert list(zip(texts, labels, strict=True)) == [("oil falls", 0), ("gold up", 1), ("fed holds", 2)]

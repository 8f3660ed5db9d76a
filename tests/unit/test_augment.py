"""The label-preserving substitutions of bert_core.augment."""

from __future__ import annotations

import random
import re

import pytest

from bert_core.augment import (
    CASHTAG,
    COMPANY_NAMES,
    NUMBER,
    SubstitutionPool,
    augment_text,
    augment_texts,
    cashtag_pool,
    substitute_cashtags,
    substitute_companies,
    substitute_numbers,
)

TEXTS = [
    "$GM - Deutsche Bank cuts GM to Hold https://t.co/7Fv1ZiFZBS",
    "$AAPL $MSFT rally as Apple beats estimates by 12.5%",
    "$TSLA price target raised to $1,250.00 from $900 at Goldman Sachs",
    "$BRK.B slips 0.8% in 2019 trading",
]
POOL = SubstitutionPool(cashtag_pool(TEXTS))


def test_cashtag_pool_collects_upper_cased_sorted_tags() -> None:
    assert cashtag_pool(["$aapl up", "$MSFT and $AAPL", "costs $5", "a$B"]) == ("$AAPL", "$MSFT")
    assert cashtag_pool(["$AAPL", "$AAPL", "$MSFT"], min_count=2) == ("$AAPL",)
    assert POOL.cashtags == ("$AAPL", "$BRK.B", "$GM", "$MSFT", "$TSLA")


@pytest.mark.parametrize("seed", range(20))
def test_a_cashtag_is_replaced_by_another_cashtag_of_the_pool(seed: int) -> None:
    text = "$GM - Deutsche Bank cuts to Hold"
    out = substitute_cashtags(text, random.Random(seed), POOL.cashtags)
    tag = out.split(" ")[0]
    assert tag in POOL.cashtags and tag != "$GM"
    assert out.endswith(" - Deutsche Bank cuts to Hold")


def test_the_same_ticker_twice_gets_the_same_replacement() -> None:
    out = substitute_cashtags("$GM up; $GM again, $MSFT flat", random.Random(1), POOL.cashtags)
    tags = CASHTAG.findall(out)
    assert len(tags) == 3 and tags[0] == tags[1] != "$GM"


def test_prices_are_not_cashtags() -> None:
    assert CASHTAG.findall("target $45 from $50, $AAPL, US$B") == ["$AAPL"]


@pytest.mark.parametrize("seed", range(20))
def test_numbers_keep_their_format(seed: int) -> None:
    text = "rises 3.5% to 1,200.50 after $30 from $32; 0.25 bp in 2019"
    out = substitute_numbers(text, random.Random(seed))
    figures = NUMBER.findall(out)
    shapes = [re.sub(r"\d", "9", f) for f in NUMBER.findall(text)]
    # digits may grow or shrink by one place, but decimals, separators and the words stay
    assert [f.split(".")[1].__len__() if "." in f else 0 for f in figures] == [1, 2, 0, 0, 2, 0]
    assert "," in figures[1] or float(figures[1].replace(",", "")) < 1000
    assert figures[-1] == "2019"  # a year stays
    assert re.sub(r"[\d,.]+", "N", out) == re.sub(r"[\d,.]+", "N", text)
    assert len(shapes) == len(figures)
    # one factor for the text: "to $30 from $32" stays a rise of the same direction
    assert float(figures[2]) <= float(figures[3])


def test_figures_inside_words_dates_and_urls_stay() -> None:
    text = "Q3 EPS, 10-K, 5G, 4/7, v1.2.3 at t.co/ab12Cd"
    assert substitute_numbers(text, random.Random(0)) == text


def test_a_figure_of_at_least_one_stays_at_least_one() -> None:
    for seed in range(50):
        assert substitute_numbers("1 of 2", random.Random(seed), low=0.1, high=0.2) == "1 of 1"


@pytest.mark.parametrize("seed", range(10))
def test_a_company_name_is_replaced_by_another_listed_one(seed: int) -> None:
    out = substitute_companies("Goldman Sachs upgrades Apple", random.Random(seed), POOL)
    match = re.fullmatch(r"(.+) upgrades (.+)", out)
    assert match is not None
    first, second = match.groups()
    assert first in COMPANY_NAMES and first != "Goldman Sachs"
    assert second in COMPANY_NAMES and second != "Apple"


def test_names_inside_other_words_stay() -> None:
    text = "Pineapple prices and Targeted ads at Applebee's"
    assert substitute_companies(text, random.Random(0), POOL) == text


def test_texts_without_such_tokens_are_unchanged() -> None:
    for text in ["Fed holds rates steady", "stocks slip as yields climb", "", "Q3 beats"]:
        assert augment_text(text, 7, POOL) == text


def test_augmentation_is_deterministic_under_the_seed() -> None:
    assert augment_texts(TEXTS, 1.0, 3, POOL) == augment_texts(TEXTS, 1.0, 3, POOL)
    draws = {tuple(augment_texts(TEXTS, 1.0, seed, POOL)) for seed in range(5)}
    assert len(draws) > 1


def test_only_the_share_is_augmented_and_order_and_count_stay() -> None:
    texts = [f"$GM falls {i}.5% on Apple news" for i in range(1, 41)]
    out = augment_texts(texts, 0.25, 0, POOL)
    assert len(out) == len(texts)
    changed = [i for i, (a, b) in enumerate(zip(texts, out, strict=True)) if a != b]
    assert len(changed) == 10
    assert augment_texts(texts, 0.0, 0, POOL) == texts


def test_a_share_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="share"):
        augment_texts(TEXTS, 1.5, 0, POOL)


def test_an_empty_pool_leaves_cashtags_as_they_are() -> None:
    empty = SubstitutionPool(cashtags=(), companies=())
    assert augment_text("$GM cut", 0, empty) == "$GM cut"
    assert augment_text("$GM cut by 5%", 0, SubstitutionPool(("$GM",), ())).startswith("$GM cut by ")

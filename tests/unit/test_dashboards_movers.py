"""The overview's movers ranking (pure)."""

from __future__ import annotations

import math

import pytest

from dashboards.movers import KeyCounts, rank_movers


def test_a_small_surging_topic_outranks_a_big_busy_one() -> None:
    keys = [
        # a busy topic with its usual mix and volume: 60 of 300 market stories, 10 bearish
        KeyCounts("topic", "Markets", total=60, bearish=10, base_total=8000, base_bearish=1300),
        # a quiet topic usually ~1 bearish per 300 market stories, now 12 of 15
        KeyCounts("topic", "Energy / Oil", total=15, bearish=12, base_total=500, base_bearish=100),
    ]
    ranked = rank_movers(keys, market_total=300, market_base_total=40000)
    assert [m.key for m in ranked] == ["Energy / Oil", "Markets"]
    oil, markets = ranked
    assert oil.usual_bearish == pytest.approx(285 * (100 + 1.5) / (39500 + 200))
    assert oil.count_ratio > 10 and oil.score > 6
    assert markets.count_ratio == pytest.approx(1.0, abs=0.2) and markets.score < 2


def test_a_new_ticker_starts_from_the_prior_and_scores_high() -> None:
    new = KeyCounts("ticker", "NEWCO", total=5, bearish=4, base_total=0, base_bearish=0)
    [m] = rank_movers([new], market_total=30, market_base_total=2000)
    assert m.usual_bearish == pytest.approx(25 * 0.2 / 2200)
    assert m.score > 6 and m.share == 0.8


def test_the_volume_cycle_moves_nothing() -> None:
    # the same key at three times the market volume with three times the bearish stories
    quiet = KeyCounts("topic", "Macro", total=10, bearish=2, base_total=3000, base_bearish=600)
    busy = KeyCounts("topic", "Macro", total=30, bearish=6, base_total=3000, base_bearish=600)
    [q] = rank_movers([quiet], market_total=100, market_base_total=30000)
    [b] = rank_movers([busy], market_total=300, market_base_total=30000)
    assert q.count_ratio == pytest.approx(b.count_ratio, rel=0.05) and b.score < 3


def test_keys_without_bearish_news_are_left_out_and_limit_and_ties_are_ordered() -> None:
    keys = [
        KeyCounts("ticker", "B", total=3, bearish=1, base_total=50, base_bearish=10),
        KeyCounts("ticker", "A", total=3, bearish=1, base_total=50, base_bearish=10),
        KeyCounts("ticker", "C", total=9, bearish=0, base_total=50, base_bearish=10),
    ]
    ranked = rank_movers(keys, market_total=100, market_base_total=5000, limit=5)
    assert [m.key for m in ranked] == ["A", "B"]
    assert rank_movers(keys, market_total=100, market_base_total=5000, limit=1)[0].key == "A"
    zero = rank_movers(
        [KeyCounts("ticker", "Z", total=2, bearish=2, base_total=0, base_bearish=0)],
        market_total=2,
        market_base_total=0,
    )
    assert zero[0].count_ratio == math.inf
    with pytest.raises(ValueError):
        rank_movers(keys, market_total=-1, market_base_total=0)

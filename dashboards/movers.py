"""Movers: which topics and tickers have far more bearish news than usual right now.

Pure ranking, no I/O (the counts come from `dashboards.data.indices.mover_counts`). The
overview's topic table is sorted by volume, so a small topic that is surging sits near its
bottom; this ranks by surprise instead, with the alert detector's own statistics
(services.alerting.detector): a key's usual bearish count is its bearish stories per market
story over the baseline period times the rest of the market's stories now (so the daily
volume cycle cancels, and a never-seen key starts from the detector's prior), and its
usual share is its baseline bearish share. The score is the larger of the two surprises,
-log10 of the beta-binomial tail p-values; a key the detector would alert on scores at
least -log10(p_warning).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from services.alerting import DetectorConfig, Scope, betabinom_sf


@dataclass(frozen=True, slots=True)
class KeyCounts:
    """One key's stories in the recent window and in the baseline period before it."""

    scope: Scope
    key: str
    total: int
    bearish: int
    base_total: int
    base_bearish: int


@dataclass(frozen=True, slots=True)
class Mover:
    scope: Scope
    key: str
    stories: int
    bearish: int
    usual_bearish: float  # bearish stories the key usually gets at the market's current volume
    share: float
    usual_share: float
    count_ratio: float  # bearish / usual_bearish (inf when none are usual)
    score: float  # -log10 of the smaller p-value (count or share)


def rank_movers(
    keys: Iterable[KeyCounts],
    *,
    market_total: int,
    market_base_total: int,
    config: DetectorConfig | None = None,
    limit: int = 20,
) -> list[Mover]:
    """Keys with bearish stories now, most surprising first (ties: more bearish, then name).

    `market_total` / `market_base_total` are the market's stories in the window and in the
    baseline period. Priors as in the detector: `topic_prior_rate` / `ticker_prior_rate`
    worth `surge_prior_stories` market stories for the count, `prior_items` stories at the
    market's baseline share for the share."""
    cfg = config or DetectorConfig()
    if market_total < 0 or market_base_total < 0 or limit < 0:
        raise ValueError("counts and limit must not be negative")
    movers: list[Mover] = []
    for k in keys:
        if k.bearish <= 0 or k.total <= 0:
            continue
        prior_rate = cfg.topic_prior_rate if k.scope == "topic" else cfg.ticker_prior_rate
        alpha = k.base_bearish + prior_rate * cfg.surge_prior_stories
        beta = max(market_base_total - k.base_total, 0) + cfg.surge_prior_stories
        rest = max(market_total - k.total, 0)
        usual = rest * alpha / beta
        p_count = betabinom_sf(k.bearish, k.bearish + rest, alpha, beta)
        prior_share = cfg.prior_share
        a = k.base_bearish + cfg.prior_items * prior_share
        b = (k.base_total - k.base_bearish) + cfg.prior_items * (1.0 - prior_share)
        p_share = betabinom_sf(k.bearish, k.total, a, b)
        p = max(min(p_count, p_share), 1e-300)
        movers.append(
            Mover(
                scope=k.scope,
                key=k.key,
                stories=k.total,
                bearish=k.bearish,
                usual_bearish=usual,
                share=k.bearish / k.total,
                usual_share=a / (a + b),
                count_ratio=k.bearish / usual if usual > 0 else math.inf,
                score=-math.log10(p),
            )
        )
    movers.sort(key=lambda m: (-m.score, -m.bearish, m.scope, m.key))
    return movers[:limit]

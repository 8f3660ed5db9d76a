"""Three calm days with the intraday and weekly volume cycle (a Thursday, the Friday, the
Saturday: x3 at the open, quiet nights, a quiet weekend), from real headlines labelled by
a trained model (the test suite's tiny one), raise no detection at all with the default
detector. The pure detector over the stream's buckets: the alerter runs exactly this over
the stored buckets (tests/integration/test_alerter_*.py show that path end to end)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bert_core import Predictor, normalize_text
from services.alerting import DetectorConfig, aggregate, apply, detect
from services.storage import ScoredItem

from .alert_streams import calm_cycle, cycle_rate_per_min

pytestmark = pytest.mark.integration

START = datetime(2025, 3, 6, tzinfo=UTC)  # a Thursday


def test_three_calm_days_with_the_volume_cycle_labelled_by_a_model_raise_nothing(
    saved_model_dir: Path,
) -> None:
    # a few seed rows are empty once normalised; the scorer would dead-letter them
    stories = [s for s in calm_cycle(days=3, start=START, seed=11) if normalize_text(s[0].text)]
    predictor = Predictor.load(saved_model_dir)
    texts = sorted({h.text for h, _, _ in stories})
    labels = {}
    for i in range(0, len(texts), 256):
        chunk = texts[i : i + 256]
        labels.update(zip(chunk, predictor.predict(chunk), strict=True))
    items = [
        ScoredItem(
            event_id=f"calm-{n}-{h.index}",
            headline=h.text,
            published_at=at,
            received_at=at,
            model_version=labels[h.text].model_version,
            topic=topic,
            topic_score=1.0,
            sentiment=labels[h.text].sentiment,
            p_bearish=labels[h.text].sentiment_probs["bearish"],
            p_neutral=labels[h.text].sentiment_probs["neutral"],
            p_bullish=labels[h.text].sentiment_probs["bullish"],
            sentiment_score=labels[h.text].sentiment_score,
            scored_at=at,
            source="tfn",
            tickers=h.tickers,
        )
        for n, (h, at, topic) in enumerate(stories)
    ]
    # the stream is what it says: the cycle is in it, and the model calls a real share bearish
    per_hour = Counter((i.published_at.weekday(), i.published_at.hour) for i in items)
    assert per_hour[(3, 14)] > 2.2 * per_hour[(3, 11)] > 5 * per_hour[(3, 2)] / 2
    assert per_hour[(5, 14)] < per_hour[(4, 14)] / 5  # Saturday is quiet
    assert all(cycle_rate_per_min(i.published_at) > 0 for i in items)
    bearish = sum(i.sentiment == "bearish" for i in items) / len(items)
    assert 0.05 <= bearish <= 0.6, f"the model labels {bearish:.1%} bearish: not a meaningful stream"
    assert len({t for i in items for t in i.tickers}) > 100

    until = START + timedelta(days=3)
    run = detect(aggregate(items).values(), until=until, config=DetectorConfig())
    assert run.detections == [], [(d.scope, d.key, d.window_end, d.tests, d.p_value) for d in run.detections]
    assert apply(None, run.detections, now=until).actions == []
    assert sum(run.state.market_rate.buckets) > 0  # the market's hour profile was learned
